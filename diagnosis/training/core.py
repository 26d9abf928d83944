"""Seeded training loops and validation metrics for the diagnostic networks (pure torch/numpy/scipy).

Zoom-in-Net is trained with image-level grades only, in the paper's stages (each can be skipped):

1. **m**: M-Net alone, cross-entropy on its grade scores.
2. **a**: A-Net on the frozen M-Net (weights and batch-norm statistics fixed), cross-entropy on A-Net's
   grade scores (the spatial sums of the gated maps). This is where the attention learns to sit on
   lesions.
3. **c**: C-Net and the fusion layer on the crops the frozen M-Net/A-Net choose, loss = cross-entropy of
   the fused scores + `c_weight` x cross-entropy of C-Net's own scores.
4. **joint** (optional, off by default): every part together with the weighted sum of all four
   cross-entropies. Crop choice is a hard argmax, so A-Net gets no gradient from C-Net's loss (as in
   the paper).

Training M-Net and A-Net jointly from the start (one summed loss) was tried first and gave M-Net a lower
grade accuracy on held-out generated images than training it alone first (a one-off comparison, not
kept as a test or benchmark); the staged order is also cheaper, since the frozen parts need no backward
pass. Training images are rotated by multiples of 90 degrees and flipped (grades do not
depend on orientation).

Runs are reproducible: `seed_everything` seeds Python, numpy and torch, and every shuffle and
augmentation draws from one seeded torch generator. On CPU with a fixed thread count two runs give
identical weights; on CUDA, cuDNN's non-deterministic kernels make runs close, not identical.

Metrics: quadratic-weighted Cohen's kappa over the full ICDR category list (so an unused grade does
not change the weights) and ROC AUC by the Mann-Whitney statistic with midranks for ties (equal to the
trapezoidal area under the empirical ROC curve).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from scipy.stats import rankdata
from torch import Tensor, nn

from diagnosis.networks.fundus_glaucoma import FundusGlaucomaNet, crop_boxes, locate_optic_disc
from diagnosis.networks.inference import autocast, autocast_dtype, normalise_images, select_device, to_device
from diagnosis.networks.synthetic import ICDR_GRADES, SyntheticFundus, generate_fundus_set
from diagnosis.networks.vf_glaucoma import VFGlaucomaNet
from diagnosis.networks.zoom_in_net import REFERABLE_FROM_GRADE, ZoomInNet, ZoomInNetConfig

# --- metrics ---------------------------------------------------------------------------------------


def quadratic_weighted_kappa(
    rater_a: Sequence[int], rater_b: Sequence[int], categories: Sequence[int] = ICDR_GRADES
) -> float:
    """Cohen's kappa with weights (i - j)^2 / (K - 1)^2 over the given category list.

    Pass every category of the scale (ICDR: 0-4): the weights depend on K, so building the list from
    the grades that happen to occur changes the result. NaN when chance disagreement is zero (both
    raters used one and the same category throughout).
    """
    a, b = np.asarray(rater_a), np.asarray(rater_b)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("expected two non-empty rating sequences of equal length")
    position = {category: i for i, category in enumerate(categories)}
    if len(position) < 2:
        raise ValueError("kappa needs at least two categories")
    unknown = (set(a.tolist()) | set(b.tolist())) - set(position)
    if unknown:
        raise ValueError(f"ratings outside the category list: {sorted(unknown)}")
    k = len(position)
    observed = np.zeros((k, k))
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        observed[position[x], position[y]] += 1
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / a.size
    i, j = np.indices((k, k))
    weights = (i - j) ** 2 / (k - 1) ** 2
    chance = float((weights * expected).sum())
    if chance == 0.0:
        return float("nan")
    return 1.0 - float((weights * observed).sum()) / chance


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting one half."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("labels and scores must be 1-D and of equal length")
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative case")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    ranks = rankdata(s, method="average")  # midranks for ties
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def box_contains(box: Sequence[float], point: Sequence[float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def lesion_recall(
    boxes_per_image: Sequence[Sequence[Sequence[float]]], lesion_centres_per_image: Sequence[Sequence[Sequence[float]]]
) -> float:
    """Fraction of lesions whose centre lies inside at least one box of its image (the paper's measure)."""
    covered = total = 0
    for boxes, centres in zip(boxes_per_image, lesion_centres_per_image, strict=True):
        for centre in centres:
            total += 1
            covered += any(box_contains(box, centre) for box in boxes)
    if total == 0:
        raise ValueError("no lesions to recall")
    return covered / total


def random_box_recall(
    samples: Sequence[SyntheticFundus], num_boxes: int, box_side: float, *, draws: int = 20, seed: int = 0
) -> float:
    """Baseline: recall of `num_boxes` square boxes centred uniformly inside each fundus disc.

    Centres inside the disc (not the whole frame) make this a fair baseline: a network that only learnt
    where the fundus is would already match it.
    """
    rng = np.random.default_rng(seed)
    recalls = []
    for _ in range(draws):
        boxes_per_image = []
        for sample in samples:
            size = sample.image.shape[0]
            radius = np.sqrt(rng.uniform(0, 1, num_boxes)) * sample.fundus_radius
            angle = rng.uniform(0, 2 * np.pi, num_boxes)
            cx = np.clip(sample.fundus_centre[0] + radius * np.cos(angle), box_side / 2, size - box_side / 2)
            cy = np.clip(sample.fundus_centre[1] + radius * np.sin(angle), box_side / 2, size - box_side / 2)
            boxes_per_image.append(
                [
                    (x - box_side / 2, y - box_side / 2, x + box_side / 2, y + box_side / 2)
                    for x, y in zip(cx, cy, strict=True)
                ]
            )
        recalls.append(lesion_recall(boxes_per_image, [[lesion.centre for lesion in s.lesions] for s in samples]))
    return float(np.mean(recalls))


# --- shared training machinery ---------------------------------------------------------------------


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; returns the generator every shuffle and augmentation draws from."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries that use the legacy global state
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@dataclass(frozen=True)
class TrainingProgress:
    stage: str
    epoch: int  # 1-based within the stage
    epochs: int
    step: int  # 1-based within the epoch
    steps: int
    loss: float
    elapsed_s: float


ProgressCallback = Callable[[TrainingProgress], None]


@dataclass
class TrainingResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch
    metrics: dict[str, float] = field(default_factory=dict)  # on the validation set, if given
    seconds: float = 0.0
    stopped_early: bool = False  # the time budget ran out (the run is then not reproducible)


def _augment(generator: torch.Generator, *batches: Tensor) -> tuple[Tensor, ...]:
    """Per image: a random rotation by a multiple of 90 degrees and a random flip, the same for every view.

    Grades do not depend on orientation, and flipped/rotated copies stop the network from learning
    where the optic disc sits instead of what lesions look like.
    """
    count = batches[0].shape[0]
    turns = torch.randint(0, 4, (count,), generator=generator).tolist()
    flips = torch.randint(0, 2, (count,), generator=generator).tolist()
    outputs = []
    for batch in batches:
        images = []
        for image, turn, flip in zip(batch, turns, flips, strict=True):
            image = torch.rot90(image, turn, dims=(1, 2))
            images.append(torch.flip(image, dims=(2,)) if flip else image)
        outputs.append(torch.stack(images))
    return tuple(outputs)


def _grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    # Loss scaling is only needed for float16; bfloat16 has float32's exponent range.
    return torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)


def _optimise(loss: Tensor, optimiser: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> float:
    """One optimiser step on `loss` (scaled when float16 needs it); returns the loss value."""
    optimiser.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimiser)
    scaler.update()
    return float(loss.detach())


def _downscale_uint8(images: Tensor, size: int) -> Tensor:
    """uint8 views at M-Net's size, computed once (normalisation is affine, so it commutes with resizing)."""
    if images.shape[-1] == size:
        return images
    chunks = []
    for chunk in images.split(64):
        small = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        chunks.append(small.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(chunks)


# --- Zoom-in-Net -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DRTrainingPlan:
    """Epochs per stage (0 skips a stage) and the optimiser settings shared by all stages."""

    m_epochs: int = 12  # M-Net alone
    a_epochs: int = 4  # A-Net on the frozen M-Net
    c_epochs: int = 4  # C-Net and fusion on crops chosen by the frozen M-Net/A-Net
    joint_epochs: int = 0  # optional fine-tuning of every part with the joint loss
    batch_size: int = 16
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    augment: bool = True
    # Joint stage loss weights (the C stage uses fused + c_weight * C-Net).
    m_weight: float = 1.0
    a_weight: float = 1.0
    c_weight: float = 0.5
    fused_weight: float = 1.0


def _stage_parameters(model: ZoomInNet, stage: str) -> tuple[list[nn.Parameter], list[nn.Module]]:
    """(parameters trained, modules kept frozen in eval mode so batch-norm statistics stay fixed)."""
    if stage == "m":
        return [*model.m_net.parameters(), *model.m_head.parameters()], []
    if stage == "a":
        return list(model.a_net.parameters()), [model.m_net, model.m_head]
    if stage == "c":
        trained = [*model.c_net.parameters(), *model.c_head.parameters(), *model.fusion.parameters()]
        return trained, [model.m_net, model.m_head, model.a_net]
    return list(model.parameters()), []


def _stage_loss(
    model: ZoomInNet, stage: str, plan: DRTrainingPlan, low: Tensor, high: Tensor | None, targets: Tensor
) -> Tensor:
    if stage == "m":
        return F.cross_entropy(model.m_head(model.m_net(low).mean(dim=(2, 3))).float(), targets)
    if stage == "a":
        with torch.no_grad():  # frozen M-Net: no graph, no backward through it
            features = model.m_net(low)
        return F.cross_entropy(model.a_net(features)[0].float(), targets)
    assert high is not None
    if stage == "c":
        with torch.no_grad():
            whole = model.look(low)
        c_logits, logits = model.zoom(high, whole)
        return F.cross_entropy(logits.float(), targets) + plan.c_weight * F.cross_entropy(c_logits.float(), targets)
    output = model(high, lowres=low)
    assert output.c_logits is not None
    return (
        plan.fused_weight * F.cross_entropy(output.logits.float(), targets)
        + plan.m_weight * F.cross_entropy(output.m_logits.float(), targets)
        + plan.a_weight * F.cross_entropy(output.a_logits.float(), targets)
        + plan.c_weight * F.cross_entropy(output.c_logits.float(), targets)
    )


def train_zoom_in_net(
    model: ZoomInNet,
    images: Tensor,
    grades: Tensor,
    *,
    plan: DRTrainingPlan | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
    validation: tuple[Tensor, Tensor] | None = None,
    time_budget_s: float | None = None,
) -> TrainingResult:
    """Train in place, stage by stage. images: N x 3 x S x S uint8 at the config's `highres_size`;
    grades: N ints 0-4.

    `validation` (images, grades) in the same form gives `result.metrics`. `time_budget_s` stops between
    steps once exceeded (recorded in `stopped_early`).
    """
    plan = plan or DRTrainingPlan()
    config = model.config
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != config.highres_size:
        raise ValueError(
            f"images must be N x 3 x {config.highres_size}^2 uint8, got {tuple(images.shape)} {images.dtype}"
        )
    if grades.shape != (images.shape[0],) or not set(grades.tolist()) <= set(ICDR_GRADES):
        raise ValueError("grades must be one ICDR grade (0-4) per image")
    device = device or select_device()
    generator = seed_everything(seed)
    model.to(device)
    lowres = _downscale_uint8(images, config.input_size)
    result = TrainingResult()
    started = time.perf_counter()
    scaler = _grad_scaler(device)
    steps = (images.shape[0] + plan.batch_size - 1) // plan.batch_size

    stages = [("m", plan.m_epochs), ("a", plan.a_epochs), ("c", plan.c_epochs), ("joint", plan.joint_epochs)]
    for stage, epochs in stages:
        if epochs <= 0 or result.stopped_early:
            continue
        trained, frozen = _stage_parameters(model, stage)
        optimiser = torch.optim.AdamW(trained, lr=plan.learning_rate, weight_decay=plan.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=plan.learning_rate, total_steps=epochs * steps, pct_start=0.2
        )
        needs_highres = stage in ("c", "joint")
        for epoch in range(1, epochs + 1):
            model.train()
            for module in frozen:
                module.eval()
            losses = []
            for step, batch_index in enumerate(
                torch.randperm(images.shape[0], generator=generator).split(plan.batch_size), 1
            ):
                if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                    result.stopped_early = True
                    break
                views = [lowres[batch_index]] + ([images[batch_index]] if needs_highres else [])
                if plan.augment:
                    views = list(_augment(generator, *views))
                low = normalise_images(views[0].to(device))
                high = normalise_images(views[1].to(device)) if needs_highres else None
                with autocast(device):
                    loss = _stage_loss(model, stage, plan, low, high, grades[batch_index].to(device))
                losses.append(_optimise(loss, optimiser, scaler))
                schedule.step()
                if progress is not None:
                    progress(
                        TrainingProgress(stage, epoch, epochs, step, steps, losses[-1], time.perf_counter() - started)
                    )
            result.history.append(
                {
                    "stage": stage,
                    "epoch": epoch,
                    "loss": float(np.mean(losses)) if losses else float("nan"),
                    "seconds": time.perf_counter() - started,
                }
            )
            if result.stopped_early:
                break
    model.eval()
    if validation is not None:
        result.metrics = evaluate_zoom_in_net(model, *validation, device=device)
    result.seconds = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class DRPredictions:
    probabilities: np.ndarray  # N x 5
    boxes: np.ndarray  # N x k x 4, view fractions
    attention: np.ndarray  # N x h x w attention grid


def predict_zoom_in_net(
    model: ZoomInNet, images: Tensor, *, batch_size: int = 32, device: torch.device | None = None
) -> DRPredictions:
    """Batched forward over uint8 N x 3 x S x S high-resolution views (the evaluation path)."""
    device = device or next(model.parameters()).device
    model.eval()
    probabilities, boxes, attention = [], [], []
    with torch.inference_mode():
        for chunk in images.split(batch_size):
            with autocast(device):
                output = model(normalise_images(chunk.to(device)))
            probabilities.append(output.probabilities.float().cpu())
            boxes.append(output.boxes.float().cpu())
            attention.append(output.attention_grid.float().cpu())
    return DRPredictions(torch.cat(probabilities).numpy(), torch.cat(boxes).numpy(), torch.cat(attention).numpy())


def evaluate_zoom_in_net(
    model: ZoomInNet, images: Tensor, grades: Tensor, *, batch_size: int = 32, device: torch.device | None = None
) -> dict[str, float]:
    """Quadratic-weighted kappa (grades 0-4), accuracy and referable-DR AUC on a labelled set."""
    predictions = predict_zoom_in_net(model, images, batch_size=batch_size, device=device)
    truth = grades.cpu().numpy().astype(int)
    predicted = predictions.probabilities.argmax(axis=1)
    referable_truth = truth >= REFERABLE_FROM_GRADE
    metrics = {
        "kappa": quadratic_weighted_kappa(truth.tolist(), predicted.tolist(), ICDR_GRADES),
        "accuracy": float((predicted == truth).mean()),
        "n": float(len(truth)),
    }
    if referable_truth.any() and not referable_truth.all():
        referable = predictions.probabilities[:, REFERABLE_FROM_GRADE:].sum(axis=1)
        metrics["referable_auc"] = roc_auc(referable_truth, referable)
    return metrics


def fundus_tensors(samples: Sequence[SyntheticFundus]) -> tuple[Tensor, Tensor]:
    """Generated photographs as (N x 3 x S x S uint8, N grades) for the training functions."""
    images = torch.from_numpy(np.stack([sample.image for sample in samples])).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor([sample.grade for sample in samples], dtype=torch.long)


@dataclass
class DemoTrainingResult:
    model: ZoomInNet
    metrics: dict[str, float]
    training: TrainingResult
    train_size: int
    validation_size: int
    seed: int


def train_demo_dr_model(
    *,
    seed: int = 0,
    train_size: int = 600,
    validation_size: int = 150,
    plan: DRTrainingPlan | None = None,
    config: ZoomInNetConfig | None = None,
    time_budget_s: float | None = 170.0,
    progress: ProgressCallback | None = None,
    device: torch.device | None = None,
) -> DemoTrainingResult:
    """A small DR grader trained on generated photographs, for demos and for wiring the platform end to end.

    The defaults (600 images, the default plan) take about 45 s on 2 CPU cores (generation ~10 s,
    training ~33 s) and reached kappa 0.88 / accuracy 0.80 on the 150 validation images; 1,200 images
    and longer stages took 2 minutes for no clear gain. `time_budget_s` is a safety net on slower
    machines. The validation images come from a different seed, so they are unseen. Not a clinical model.
    """
    config = config or ZoomInNetConfig.small()
    train = generate_fundus_set(train_size, seed=seed, size=config.highres_size)
    held_out = generate_fundus_set(validation_size, seed=seed + 1_000_003, size=config.highres_size)
    images, grades = fundus_tensors(train)
    validation = fundus_tensors(held_out)
    seed_everything(seed)
    model = ZoomInNet(config)
    training = train_zoom_in_net(
        model,
        images,
        grades,
        plan=plan,
        seed=seed,
        device=device,
        progress=progress,
        validation=validation,
        time_budget_s=time_budget_s,
    )
    return DemoTrainingResult(model, training.metrics, training, train_size, validation_size, seed)


# --- glaucoma from visual fields -------------------------------------------------------------------


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
    device = device or select_device()
    generator = seed_everything(seed)
    model.to(device)
    if plan.warm_start_indices:
        from diagnosis.training.vf_indices import warm_start_index_head

        warm_start_index_head(model, indices, labels)
    optimiser = torch.optim.AdamW(model.parameters(), lr=plan.learning_rate, weight_decay=plan.weight_decay)
    scaler = _grad_scaler(device)
    result = TrainingResult()
    started = time.perf_counter()
    steps = (plots.shape[0] + plan.batch_size - 1) // plan.batch_size
    for epoch in range(1, plan.epochs + 1):
        model.train()
        losses = []
        for step, batch_index in enumerate(
            torch.randperm(plots.shape[0], generator=generator).split(plan.batch_size), 1
        ):
            with autocast(device):
                logits = model(normalise_images(plots[batch_index].to(device)), indices[batch_index].to(device))
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels[batch_index].float().to(device))
            losses.append(_optimise(loss, optimiser, scaler))
            if progress is not None:
                progress(
                    TrainingProgress("vf", epoch, plan.epochs, step, steps, losses[-1], time.perf_counter() - started)
                )
        result.history.append(
            {"stage": "vf", "epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - started}
        )
    model.eval()
    if validation is not None:
        result.metrics = evaluate_vf_glaucoma(model, *validation, device=device)
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


def trainable_parameters_without_gradient(model: nn.Module) -> list[str]:
    """Names of trainable parameters whose gradient is missing or all zero after a backward pass."""
    return [
        name
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and (parameter.grad is None or not bool(parameter.grad.abs().sum() > 0))
    ]


# --- glaucoma from fundus photographs --------------------------------------------------------------


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
    orientation in this task), with binary cross-entropy.
    """
    plan = plan or FundusGlaucomaTrainingPlan()
    if labels.shape != (images.shape[0],):
        raise ValueError("labels must have one 0/1 entry per image")
    device = device or select_device()
    generator = seed_everything(seed)
    model.to(device)
    crops = fundus_glaucoma_crops(model, images, device=device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=plan.learning_rate, weight_decay=plan.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(plan.epochs, 1))
    scaler = _grad_scaler(device)
    result = TrainingResult()
    started = time.perf_counter()
    steps = (crops.shape[0] + plan.batch_size - 1) // plan.batch_size
    for epoch in range(1, plan.epochs + 1):
        model.train()
        losses = []
        order = torch.randperm(crops.shape[0], generator=generator)
        for step, batch_index in enumerate(order.split(plan.batch_size), 1):
            batch = crops[batch_index]
            if plan.augment:
                (batch,) = _augment(generator, batch)
            with autocast(device):
                logits = model.classify(to_device(normalise_images(batch.to(device)), device))
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels[batch_index].float().to(device))
            losses.append(_optimise(loss, optimiser, scaler))
            if progress is not None:
                progress(
                    TrainingProgress(
                        "fundus-glaucoma", epoch, plan.epochs, step, steps, losses[-1], time.perf_counter() - started
                    )
                )
        schedule.step()
        result.history.append(
            {
                "stage": "fundus-glaucoma",
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "seconds": time.perf_counter() - started,
            }
        )
    model.eval()
    if validation is not None:
        result.metrics = evaluate_fundus_glaucoma(model, *validation, device=device)
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


def binary_metrics(truth: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, sensitivity and specificity at `threshold`, and ROC AUC, of 0/1 truth and scores."""
    predicted = scores >= threshold
    metrics = {"accuracy": float((predicted == truth).mean()), "n": float(len(truth))}
    if truth.any():
        metrics["sensitivity"] = float(predicted[truth].mean())
    if (~truth).any():
        metrics["specificity"] = float((~predicted[~truth]).mean())
    if truth.any() and (~truth).any():
        metrics["auc"] = roc_auc(truth, scores)
    return metrics
