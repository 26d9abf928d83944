"""Training runs as the train_model command and seed_demo need them: data in, a registered model out.

Pure training lives in ``core``; this module only chooses data, trains, and writes a checkpoint with the
model card. Registration is the caller's (it needs the database).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from diagnosis.networks.checkpoints import architecture_of, save_checkpoint
from diagnosis.networks.fundus_glaucoma import FundusGlaucomaConfig, FundusGlaucomaNet
from diagnosis.networks.inference import select_device
from diagnosis.networks.synthetic import generate_fundus_set, generate_glaucoma_fundus_set
from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig, VFGlaucomaNet
from diagnosis.networks.zoom_in_net import ZoomInNet, ZoomInNetConfig
from diagnosis.training import datasets
from diagnosis.training.core import (
    DRTrainingPlan,
    FundusGlaucomaTrainingPlan,
    TrainingProgress,
    VFTrainingPlan,
    fundus_tensors,
    seed_everything,
    train_fundus_glaucoma,
    train_vf_glaucoma,
    train_zoom_in_net,
)
from trials.uploads.visual_field import reliability


@dataclass
class TrainedModel:
    architecture: str
    weights: bytes
    metrics: dict[str, float]
    model_card: dict[str, Any]
    seconds: float
    state_dict: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)


def _checkpoint(model: torch.nn.Module, metadata: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    save_checkpoint(model.cpu(), buffer, metadata=metadata)
    return buffer.getvalue()


def _resized(data: datasets.FundusSet, size: int) -> datasets.FundusSet:
    if data.images.shape[-1] == size:
        return data
    images = torch.nn.functional.interpolate(data.images.float(), size=size, mode="bilinear")
    return datasets.FundusSet(images.round().clamp(0, 255).to(torch.uint8), data.grades, data.names, data.groups)


def generated_dr_photographs(count: int, *, seed: int, size: int) -> datasets.FundusSet:
    """`count` generated photographs with controlled lesions (grade from the lesions), seeded, at `size`."""
    return datasets.FundusSet(
        *fundus_tensors(generate_fundus_set(count, seed=seed, size=size)),
        names=[f"synthetic-{i}" for i in range(count)],
    )


def generated_glaucoma_photographs(count: int, *, seed: int, size: int) -> datasets.FundusSet:
    """`count` generated optic discs with small (0) or large (1) cups, seeded, at `size`."""
    samples = generate_glaucoma_fundus_set(count, seed=seed, size=size)
    labels = torch.tensor([int(sample.glaucoma) for sample in samples], dtype=torch.long)
    return datasets.FundusSet(fundus_tensors(samples)[0], labels, [f"synthetic-{i}" for i in range(count)])


@dataclass
class PhotographSplit:
    train: tuple[torch.Tensor, torch.Tensor]  # images N x 3 x S x S uint8, labels N
    validation: tuple[torch.Tensor, torch.Tensor] | None
    sizes: tuple[int, int]  # training, validation


def photograph_split(
    generated: datasets.FundusSet | None,
    data: datasets.FundusSet | None,
    size: int,
    fraction: float,
    seed: int,
    *,
    data_in_training_only: bool = False,
) -> PhotographSplit:
    """Generated and/or given photographs at `size`, split into seeded training and validation sets.
    `data_in_training_only`: the given photographs all train and the validation set is generated only (the
    demo scores its real photographs on its own held-out set, demo/crossval.py)."""
    parts = [part for part in (generated, None if data is None else _resized(data, size)) if part is not None]
    if not parts:
        raise ValueError("no training data")
    everything = datasets.merge(*parts)
    if data_in_training_only and generated is not None and data is not None:
        train_idx, val_idx = datasets.split(len(generated), fraction, seed)
        train_idx += list(range(len(generated), len(everything)))
    else:
        train_idx, val_idx = datasets.split(len(everything), fraction, seed, groups=everything.groups)
    return PhotographSplit(
        (everything.images[train_idx], everything.grades[train_idx]),
        (everything.images[val_idx], everything.grades[val_idx]) if val_idx else None,
        (len(train_idx), len(val_idx)),
    )


def _trained(
    model: torch.nn.Module, result: Any, card: dict[str, Any], *, seed: int, preset: str, device: Any
) -> TrainedModel:
    """The checkpoint, rounded metrics and the model card (with what every card states) of a finished run."""
    metrics = {k: round(float(v), 4) for k, v in result.metrics.items()}
    card = {**card, "metrics": metrics, "not_for_clinical_use": True, "seed": seed, "preset": preset}
    card["device"] = str(device)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    checkpoint = _checkpoint(model, {"seed": seed})
    return TrainedModel(architecture_of(model), checkpoint, metrics, card, result.seconds, state)


def train_dr(
    *,
    data: datasets.FundusSet | None,
    synthetic: int,
    seed: int,
    preset: str,
    validation_fraction: float,
    plan: DRTrainingPlan | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
    description: str,
    data_in_training_only: bool = False,
    time_budget_s: float | None = None,
    generated: datasets.FundusSet | None = None,
) -> TrainedModel:
    """`generated`: the `synthetic` generated photographs made already (`generated_dr_photographs`), e.g. one
    set shared by the folds of a cross-validation."""
    config = ZoomInNetConfig.preset(preset)
    if generated is None and synthetic:
        generated = generated_dr_photographs(synthetic, seed=seed, size=config.highres_size)
    split = photograph_split(
        generated, data, config.highres_size, validation_fraction, seed, data_in_training_only=data_in_training_only
    )
    seed_everything(seed)
    model = ZoomInNet(config)
    device = select_device()
    result = train_zoom_in_net(
        model,
        *split.train,
        plan=plan,
        seed=seed,
        device=device,
        progress=progress,
        validation=split.validation,
        time_budget_s=time_budget_s,
    )
    card = {
        "intended_use": "Research and platform demonstration: ICDR diabetic-retinopathy grade and referable-DR "
        "probability from a colour fundus photograph.",
        "training_data": f"{description}; {split.sizes[0]} training and {split.sizes[1]} validation images "
        f"(seeded split, seed {seed}).",
        "metrics_note": "On the held-out validation images: quadratic-weighted kappa over grades 0-4, accuracy, "
        "referable-DR ROC AUC.",
        "limitations": "Small network trained on little data; not validated on any clinical population.",
        "stopped_early": result.stopped_early,
    }
    return _trained(model, result, card, seed=seed, preset=preset, device=device)


def reliable_training_fields(fields: list[tuple[Any, int, str]]) -> tuple[list[tuple[Any, int, str]], int]:
    """The fields the upload pipeline would call reliable (Li et al. 2018 cut-offs), and how many were left out:
    the net is trained on what it is allowed to score."""
    kept = [item for item in fields if reliability(item[0]).reliable]
    return kept, len(fields) - len(kept)


def train_vf(
    *,
    fields: list[tuple[Any, int, str]],
    seed: int,
    preset: str,
    validation_fraction: float,
    plan: VFTrainingPlan | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
    description: str,
    data: datasets.VisualFieldSet | None = None,
) -> TrainedModel:
    """`fields` are analysed and drawn as the upload pipeline does; `data` (instead) is already in the
    network's inputs, e.g. a trial's stored plots and indices (`datasets.stored_visual_field_set`)."""
    config = VFGlaucomaConfig.preset(preset)
    if data is None:
        fields, unreliable = reliable_training_fields(fields)
        data = datasets.visual_field_set(fields, size=config.input_size)
        left_out = f"; {unreliable} unreliable fields (Li et al. 2018 cut-offs) left out"
    else:  # a trial's stored fields: only those the pipeline judged reliable are stored for training
        unreliable, left_out = 0, "; reliable fields only"
    train_idx, val_idx = datasets.split(len(data), validation_fraction, seed, groups=data.groups)
    train, validation = data.subset(train_idx), data.subset(val_idx)
    seed_everything(seed)
    model = VFGlaucomaNet(config)
    device = select_device()
    result = train_vf_glaucoma(
        model,
        train.plots,
        train.indices,
        train.labels,
        plan=plan,
        seed=seed,
        device=device,
        progress=progress,
        validation=(validation.plots, validation.indices, validation.labels) if val_idx else None,
    )
    card = {
        "intended_use": "Research and platform demonstration: glaucoma probability from a reliable Humphrey 24-2 "
        "visual field (Pattern Deviation probability plot with VFI, MD and PSD).",
        "training_data": f"{description}; {len(train)} training and {len(validation)} validation fields, split by "
        f"patient (seed {seed}){left_out}.",
        "unreliable_fields_excluded": unreliable,
        "metrics_note": "On the held-out patients' fields: ROC AUC, accuracy, sensitivity and specificity at 0.5.",
        "limitations": "Trained on few patients; unreliable fields are not scored.",
    }
    return _trained(model, result, card, seed=seed, preset=preset, device=device)


def train_fundus_glaucoma_model(
    *,
    data: datasets.FundusSet | None,
    synthetic: int,
    seed: int,
    preset: str,
    validation_fraction: float,
    plan: FundusGlaucomaTrainingPlan | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
    description: str,
    data_in_training_only: bool = False,
    generated: datasets.FundusSet | None = None,
) -> TrainedModel:
    """The fundus glaucoma net from labelled photographs (`data.grades` holding 0/1) and/or generated ones
    (`generated`: made already by `generated_glaucoma_photographs`)."""
    config = FundusGlaucomaConfig.preset(preset)
    if generated is None and synthetic:
        generated = generated_glaucoma_photographs(synthetic, seed=seed, size=config.view_size)
    split = photograph_split(
        generated, data, config.view_size, validation_fraction, seed, data_in_training_only=data_in_training_only
    )
    seed_everything(seed)
    model = FundusGlaucomaNet(config)
    device = select_device()
    result = train_fundus_glaucoma(
        model, *split.train, plan=plan, seed=seed, device=device, progress=progress, validation=split.validation
    )
    card = {
        "intended_use": "Research and platform demonstration: glaucoma probability from a colour fundus photograph, "
        "judged on an automatically located optic-disc crop (the crop is shown with every prediction).",
        "training_data": f"{description}; {split.sizes[0]} training and {split.sizes[1]} validation images "
        f"(seeded split, seed {seed}).",
        "metrics_note": "On the held-out validation images: ROC AUC, accuracy, sensitivity and specificity at 0.5.",
        "limitations": "Small network trained on little data; the generated discs differ only in cup size. Not "
        "validated on any clinical population; a photograph without a visible disc gets a crop elsewhere.",
    }
    return _trained(model, result, card, seed=seed, preset=preset, device=device)


def _epochs_scaled(epochs: int, scale: float) -> int:
    """A stage's epochs scaled (at least one)."""
    return max(1, round(epochs * scale))


def demo_fundus_glaucoma_plan(scale: float = 1.0) -> FundusGlaucomaTrainingPlan:
    plan = FundusGlaucomaTrainingPlan()
    return replace(plan, epochs=_epochs_scaled(plan.epochs, scale))


def demo_vf_plan(scale: float = 1.0) -> VFTrainingPlan:
    plan = VFTrainingPlan()
    return replace(plan, epochs=_epochs_scaled(plan.epochs, scale))


def demo_dr_plan(scale: float = 1.0) -> DRTrainingPlan:
    base = DRTrainingPlan()
    if scale >= 1.0:
        return base
    return replace(
        base,
        m_epochs=max(1, round(base.m_epochs * scale)),
        a_epochs=max(1, round(base.a_epochs * scale)),
        c_epochs=max(1, round(base.c_epochs * scale)),
    )
