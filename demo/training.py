"""The demo training recipes: the small demo networks trained on the data shipped in ``demo/data`` (HRF
photographs, visualFields 24-2 fields) plus generated photographs. Used by ``seed_demo`` and registered for
``train_model --demo`` (see ``DemoConfig.ready``). Generic training lives in ``diagnosis.training``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from diagnosis.networks.fundus_glaucoma import FundusGlaucomaConfig
from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig
from diagnosis.networks.zoom_in_net import ZoomInNetConfig
from diagnosis.training import datasets
from diagnosis.training.core import TrainingProgress
from diagnosis.training.runner import (
    TrainedModel,
    demo_dr_plan,
    demo_fundus_glaucoma_plan,
    demo_vf_plan,
    train_dr,
    train_fundus_glaucoma_model,
    train_vf,
)

DEMO_DATA = Path(__file__).resolve().parent / "data"


def hrf_demo_set(size: int, *, glaucoma: bool = False) -> datasets.FundusSet:
    """All 20 shipped HRF photographs with their demo labels (DR as grade 2 and others 0, or glaucoma 1)."""
    from demo import crossval

    return crossval.hrf_set(size, glaucoma=glaucoma, held_out=None)


def _with_real_metrics(
    trained: TrainedModel,
    *,
    architecture: str,
    config: Any,
    folds: int,
    seed: int,
    retrain: Callable[[int, Any], TrainedModel],
) -> TrainedModel:
    """The card's real held-out figures and, with `folds`, K-fold cross-validation by subject over all the
    shipped real data (`retrain(seed, fold_data)` trains one fold's network)."""
    from demo import crossval

    trained = crossval.real_held_out_card(trained)
    if folds:
        trained.model_card["metrics_real_cross_validated"] = crossval.cross_validate(
            architecture,
            lambda fold, number: retrain(seed + number, fold.data),
            config=config,
            folds=folds,
            seed=seed,
        )
    return trained


def train_demo_fundus_glaucoma(
    *,
    synthetic: int = 300,
    seed: int = 0,
    preset: str = "small",
    validation_fraction: float = 0.2,
    epochs_scale: float = 1.0,
    progress: Callable[[TrainingProgress], None] | None = None,
    cross_validation_folds: int = 0,
    real: datasets.FundusSet | None = None,
) -> TrainedModel:
    """The demo fundus glaucoma net: generated discs with small or large cups plus the shipped HRF photographs
    the demo trial does not use (`real` instead: a cross-validation fold). Its card reports the demo trial's
    own photographs, held out (demo.crossval)."""
    from demo import crossval

    config = FundusGlaucomaConfig.preset(preset)
    data = real if real is not None else crossval.hrf_set(config.view_size, glaucoma=True, held_out=False)
    trained = train_fundus_glaucoma_model(
        data=data,
        synthetic=synthetic,
        seed=seed,
        preset=preset,
        validation_fraction=validation_fraction,
        plan=demo_fundus_glaucoma_plan(epochs_scale),
        progress=progress,
        description=f"{synthetic} generated photographs (glaucoma: cup-to-disc ratio 0.65-0.9, healthy 0.2-0.45) and "
        f"{len(data)} shipped real HRF photographs (glaucoma 1; healthy and DR 0), all real ones in training",
        data_in_training_only=True,
    )
    if real is not None:
        return trained
    return _with_real_metrics(
        trained,
        architecture="fundus_glaucoma",
        config=config,
        folds=cross_validation_folds,
        seed=seed,
        retrain=lambda fold_seed, fold_data: train_demo_fundus_glaucoma(
            synthetic=synthetic, seed=fold_seed, preset=preset, epochs_scale=epochs_scale, real=fold_data
        ),
    )


def demo_visual_fields() -> list[tuple[Any, int, str]]:
    healthy = datasets.visualfields_package_rows(DEMO_DATA / "visual_fields" / "vfctrSunyiu24d2.csv")
    glaucoma = datasets.visualfields_package_rows(DEMO_DATA / "visual_fields" / "vfpwgRetest24d2.csv")
    return [(vf, 0, group) for vf, group in healthy] + [(vf, 1, group) for vf, group in glaucoma]


def train_demo_dr(
    *,
    synthetic: int = 600,
    seed: int = 0,
    preset: str = "small",
    validation_fraction: float = 0.2,
    epochs_scale: float = 1.0,
    progress: Callable[[TrainingProgress], None] | None = None,
    cross_validation_folds: int = 0,
    real: datasets.FundusSet | None = None,
) -> TrainedModel:
    """The demo DR grader: generated photographs with controlled lesions plus the shipped HRF photographs the
    demo trial does not use (`real` instead: a cross-validation fold). Its card reports the demo trial's own
    photographs, held out (demo.crossval)."""
    from demo import crossval

    config = ZoomInNetConfig.preset(preset)
    data = real if real is not None else crossval.hrf_set(config.highres_size, glaucoma=False, held_out=False)
    trained = train_dr(
        data=data,
        synthetic=synthetic,
        seed=seed,
        preset=preset,
        validation_fraction=validation_fraction,
        plan=demo_dr_plan(epochs_scale),
        progress=progress,
        description=f"{synthetic} generated photographs with controlled lesions (grade from the lesions) and "
        f"{len(data)} shipped real HRF photographs (DR as grade 2, others 0), all real ones in training",
        data_in_training_only=True,
    )
    if real is not None:
        return trained
    return _with_real_metrics(
        trained,
        architecture="zoom_in_net",
        config=config,
        folds=cross_validation_folds,
        seed=seed,
        retrain=lambda fold_seed, fold_data: train_demo_dr(
            synthetic=synthetic, seed=fold_seed, preset=preset, epochs_scale=epochs_scale, real=fold_data
        ),
    )


def train_demo_vf(
    *,
    synthetic: int = 0,
    seed: int = 0,
    preset: str = "small",
    validation_fraction: float = 0.2,
    epochs_scale: float = 1.0,
    progress: Callable[[TrainingProgress], None] | None = None,
    cross_validation_folds: int = 0,
    real: datasets.VisualFieldSet | None = None,
) -> TrainedModel:
    """The demo glaucoma net: the shipped real 24-2 fields, healthy controls against glaucoma patients, less
    the patients whose fields the demo trial uses (`real` instead: a cross-validation fold). Its card
    reports those patients' fields, held out (demo.crossval)."""
    if synthetic:
        raise ValueError("The visual-field net trains on the shipped real fields; it has no generated data.")
    from demo import crossval

    fields = [] if real is not None else crossval.demo_vf_fields(held_out=False)
    count = len(real) if real is not None else len(fields)
    trained = train_vf(
        fields=fields,
        data=real,
        seed=seed,
        preset=preset,
        validation_fraction=validation_fraction,
        plan=demo_vf_plan(epochs_scale),
        progress=progress,
        description=f"{count} real 24-2 fields shipped with Visus (visualFields package: SUNY-IU healthy "
        "controls and glaucoma test-retest series)",
    )
    if real is not None:
        return trained
    return _with_real_metrics(
        trained,
        architecture="vf_glaucoma",
        config=VFGlaucomaConfig.preset(preset),
        folds=cross_validation_folds,
        seed=seed,
        retrain=lambda fold_seed, fold_data: train_demo_vf(
            seed=fold_seed, preset=preset, epochs_scale=epochs_scale, real=fold_data
        ),
    )
