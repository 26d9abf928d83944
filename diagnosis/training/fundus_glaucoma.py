"""Training and evaluating the fundus glaucoma net: the classifier learns from the fixed locator's disc crops.

Pure torch/numpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # the usual torch alias
from torch import Tensor

from diagnosis.networks.fundus_glaucoma import FundusGlaucomaNet, crop_boxes, locate_optic_disc
from diagnosis.networks.inference import autocast, normalise_images, select_device, to_device
from diagnosis.training.loop import (
    Optimiser,
    ProgressCallback,
    Stage,
    TrainingResult,
    augment,
    seed_everything,
    train_stages,
)
from diagnosis.training.metrics import binary_metrics


@dataclass(frozen=True)
class FundusGlaucomaTrainingPlan:
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    augment: bool = True


def fundus_glaucoma_crops(
    model: FundusGlaucomaNet, images: Tensor, *, device: torch.device | None = None, batch_size: int = 64
) -> Tensor:
    """Disc crops (N x 3 x input_size^2 uint8) of uint8 views: the locator is fixed, so crops are cut once."""
    size = model.config.view_size
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != size:
        raise ValueError(f"images must be N x 3 x {size}^2 uint8, got {tuple(images.shape)} {images.dtype}")
    device = device or next(model.parameters()).device
    crops = []
    with torch.inference_mode():
        for chunk in images.split(batch_size):
            views = chunk.to(device).float()
            boxes = locate_optic_disc(normalise_images(views), model.config)
            crops.append(crop_boxes(views, boxes, model.config.input_size).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(crops)


def train_fundus_glaucoma(
    model: FundusGlaucomaNet,
    images: Tensor,
    labels: Tensor,
    *,
    plan: FundusGlaucomaTrainingPlan | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    validation: tuple[Tensor, Tensor] | None = None,
) -> TrainingResult:
    """Train in place. images: N x 3 x view_size^2 uint8 photographs (square views); labels: N of 0/1.

    The classifier learns from the locator's disc crops, rotated and flipped (a disc has no preferred
    orientation in this task), with binary cross-entropy and a cosine learning-rate schedule.
    """
    plan = plan or FundusGlaucomaTrainingPlan()
    if labels.shape != (images.shape[0],):
        raise ValueError("labels must have one 0/1 entry per image")
    run_on = device or select_device()
    generator = seed_everything(seed)
    model.to(run_on)
    crops = fundus_glaucoma_crops(model, images, device=run_on)
    started = time.perf_counter()

    def loss(batch_index: Tensor) -> Tensor:
        batch = crops[batch_index]
        if plan.augment:
            (batch,) = augment(generator, batch)
        logits = model.classify(to_device(normalise_images(batch.to(run_on)), run_on))
        return F.binary_cross_entropy_with_logits(logits.float(), labels[batch_index].float().to(run_on))

    result = train_stages(
        model,
        [Stage("fundus-glaucoma", plan.epochs, list(model.parameters()), loss, schedule="cosine")],
        size=crops.shape[0],
        settings=Optimiser(plan.batch_size, plan.learning_rate, plan.weight_decay),
        generator=generator,
        device=run_on,
        progress=progress,
    )
    if validation is not None:
        result.metrics = evaluate_fundus_glaucoma(model, *validation, device=run_on)
    result.seconds = time.perf_counter() - started
    return result


def evaluate_fundus_glaucoma(
    model: FundusGlaucomaNet,
    images: Tensor,
    labels: Tensor,
    *,
    threshold: float = 0.5,
    device: torch.device | None = None,
) -> dict[str, float]:
    device = device or next(model.parameters()).device
    model.eval()
    crops = fundus_glaucoma_crops(model, images, device=device)
    scores = []
    with torch.inference_mode():
        for chunk in crops.split(64):
            with autocast(device):
                logits = model.classify(to_device(normalise_images(chunk.to(device)), device))
            scores.append(torch.sigmoid(logits.float()).cpu())
    return binary_metrics(labels.cpu().numpy().astype(bool), torch.cat(scores).numpy(), threshold)
