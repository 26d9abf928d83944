"""The one training loop every network uses: seeded, staged, mixed-precision, with progress and a time budget.

A network's trainer describes its stages (`Stage`: which parameters learn, which modules stay frozen, the
loss of a batch, the learning-rate schedule) and `train_stages` runs them in order: per epoch one seeded
shuffle, then per batch the stage's loss under autocast, one optimiser step (loss-scaled for float16), the
schedule, a progress report, and a check of the time budget.

Runs are reproducible: `seed_everything` seeds Python, numpy and torch, and every shuffle and
augmentation draws from one seeded torch generator. On CPU with a fixed thread count two runs give
identical weights; on CUDA, cuDNN's non-deterministic kernels make runs close, not identical.
Pure torch/numpy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from diagnosis.networks.inference import autocast, autocast_dtype


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; returns the generator every shuffle and augmentation draws from."""
    random.seed(seed)
    np.random.seed(seed)  # libraries that use the legacy global state
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


@dataclass(frozen=True)
class Optimiser:
    """AdamW settings shared by a network's stages."""

    batch_size: int
    learning_rate: float
    weight_decay: float


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int  # 0 skips the stage
    parameters: Sequence[nn.Parameter]  # what this stage trains
    loss: Callable[[Tensor], Tensor]  # indices of a batch -> its loss (run under autocast)
    frozen: Sequence[nn.Module] = ()  # kept in eval mode, so their batch-norm statistics stay fixed
    # "one_cycle": OneCycleLR stepped per batch (warm-up 20%); "cosine": cosine annealing per epoch.
    schedule: Literal["constant", "one_cycle", "cosine"] = "constant"


def augment(generator: torch.Generator, *batches: Tensor) -> tuple[Tensor, ...]:
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


def _scheduler(stage: Stage, optimiser: torch.optim.Optimizer, settings: Optimiser, steps: int) -> Any:
    if stage.schedule == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=settings.learning_rate, total_steps=stage.epochs * steps, pct_start=0.2
        )
    if stage.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(stage.epochs, 1))
    return None


def train_stages(
    model: nn.Module,
    stages: Sequence[Stage],
    *,
    size: int,
    settings: Optimiser,
    generator: torch.Generator,
    device: torch.device,
    progress: ProgressCallback | None = None,
    time_budget_s: float | None = None,
) -> TrainingResult:
    """Train `model` in place through `stages` over a training set of `size` items; returns the history.

    `time_budget_s` stops between steps once exceeded (recorded in `stopped_early`). The model is left in
    eval mode; `seconds` covers the stages, metrics are the caller's to fill in.
    """
    result = TrainingResult()
    started = time.perf_counter()
    scaler = _grad_scaler(device)
    steps = (size + settings.batch_size - 1) // settings.batch_size
    for stage in stages:
        if stage.epochs <= 0 or result.stopped_early:
            continue
        optimiser = torch.optim.AdamW(stage.parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        schedule = _scheduler(stage, optimiser, settings, steps)
        for epoch in range(1, stage.epochs + 1):
            model.train()
            for module in stage.frozen:
                module.eval()
            losses: list[float] = []
            for step, batch_index in enumerate(torch.randperm(size, generator=generator).split(settings.batch_size), 1):
                if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                    result.stopped_early = True
                    break
                with autocast(device):
                    loss = stage.loss(batch_index)
                losses.append(_optimise(loss, optimiser, scaler))
                if stage.schedule == "one_cycle":
                    schedule.step()
                if progress is not None:
                    elapsed = time.perf_counter() - started
                    progress(TrainingProgress(stage.name, epoch, stage.epochs, step, steps, losses[-1], elapsed))
            if stage.schedule == "cosine":
                schedule.step()
            result.history.append(
                {
                    "stage": stage.name,
                    "epoch": epoch,
                    "loss": float(np.mean(losses)) if losses else float("nan"),
                    "seconds": time.perf_counter() - started,
                }
            )
            if result.stopped_early:
                break
    model.eval()
    result.seconds = time.perf_counter() - started
    return result
