"""Training and evaluating the visual-field glaucoma net (binary cross-entropy; plots are not flipped).

Pure torch/numpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # the usual torch alias
from torch import Tensor

from diagnosis.networks.inference import autocast, normalise_images, select_device
from diagnosis.networks.vf_glaucoma import VFGlaucomaNet
from diagnosis.training.loop import Optimiser, ProgressCallback, Stage, TrainingResult, seed_everything, train_stages
from diagnosis.training.metrics import binary_metrics


@dataclass(frozen=True)
class VFTrainingPlan:
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warm_start_indices: bool = True  # start from the indices-only model (diagnosis.training.vf_indices)


def train_vf_glaucoma(
    model: VFGlaucomaNet,
    plots: Tensor,
    indices: Tensor,
    labels: Tensor,
    *,
    plan: VFTrainingPlan | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    validation: tuple[Tensor, Tensor, Tensor] | None = None,
) -> TrainingResult:
    """Train in place. plots: N x 3 x S x S uint8 PD probability plots; indices: N x 3 raw VFI/MD/PSD;
    labels: N of 0/1 (glaucoma). Plots are not flipped: a PD plot's layout is anatomical.
    """
    plan = plan or VFTrainingPlan()
    size = model.config.input_size
    if plots.dtype != torch.uint8 or plots.ndim != 4 or plots.shape[-1] != size:
        raise ValueError(f"plots must be N x 3 x {size}^2 uint8, got {tuple(plots.shape)} {plots.dtype}")
    if indices.shape != (plots.shape[0], 3) or labels.shape != (plots.shape[0],):
        raise ValueError("indices must be N x 3 and labels N")
    run_on = device or select_device()
    generator = seed_everything(seed)
    model.to(run_on)
    if plan.warm_start_indices:
        from diagnosis.training.vf_indices import warm_start_index_head

        warm_start_index_head(model, indices, labels)
    started = time.perf_counter()

    def loss(batch_index: Tensor) -> Tensor:
        logits = model(normalise_images(plots[batch_index].to(run_on)), indices[batch_index].to(run_on))
        return F.binary_cross_entropy_with_logits(logits.float(), labels[batch_index].float().to(run_on))

    result = train_stages(
        model,
        [Stage("vf", plan.epochs, list(model.parameters()), loss)],
        size=plots.shape[0],
        settings=Optimiser(plan.batch_size, plan.learning_rate, plan.weight_decay),
        generator=generator,
        device=run_on,
        progress=progress,
    )
    if validation is not None:
        result.metrics = evaluate_vf_glaucoma(model, *validation, device=run_on)
    result.seconds = time.perf_counter() - started
    return result


def evaluate_vf_glaucoma(
    model: VFGlaucomaNet,
    plots: Tensor,
    indices: Tensor,
    labels: Tensor,
    *,
    threshold: float = 0.5,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> dict[str, float]:
    device = device or next(model.parameters()).device
    model.eval()
    probabilities = []
    with torch.inference_mode():
        for plot_chunk, index_chunk in zip(plots.split(batch_size), indices.split(batch_size), strict=True):
            with autocast(device):
                probabilities.append(
                    model.predict_proba(normalise_images(plot_chunk.to(device)), index_chunk.to(device)).float().cpu()
                )
    return binary_metrics(labels.cpu().numpy().astype(bool), torch.cat(probabilities).numpy(), threshold)
