"""The demo training recipes: the small demo networks trained on the data shipped in ``demo/data`` (HRF
photographs, visualFields 24-2 fields) plus generated photographs. Used by ``seed_demo`` and registered for
``train_model --demo`` (see ``DemoConfig.ready``). Generic training lives in ``diagnosis.training``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
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
    generated_dr_photographs,
    generated_glaucoma_photographs,
    train_dr,
    train_fundus_glaucoma_model,
    train_vf,
)

DEMO_DATA = Path(__file__).resolve().parent / "data"


def hrf_demo_set(size: int, *, glaucoma: bool = False) -> datasets.FundusSet:
    """All 20 shipped HRF photographs with their demo labels (DR as grade 2 and others 0, or glaucoma 1)."""
    from demo import crossval

    return crossval.hrf_set(size, glaucoma=glaucoma, held_out=None)


@dataclass(frozen=True)
class CrossValidationRecipe:
    """How a demo network's K-fold cross-validation retrains it: the parameters of the run whose card it
    completes (kept on that card while the worker runs it, demo.cross_validation). Every fold trains the demo
    recipe on the other folds' real data plus the same generated photographs as the run itself (made once
    and shared by the folds: only the real data rotates)."""

    architecture: str
    synthetic: int = 0
    seed: int = 0
    preset: str = "small"
    epochs_scale: float = 1.0
    validation_fraction: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> CrossValidationRecipe:
        if not isinstance(data, dict):
            raise ValueError("the cross-validation recipe must be an object")
        types = {"architecture": str, "synthetic": int, "seed": int, "preset": str}
        values: dict[str, Any] = {}
        for item in fields(cls):
            if item.name not in data:
                raise ValueError(f"the cross-validation recipe has no {item.name}")
            value = data[item.name]
            wanted = types.get(item.name, float)
            if isinstance(value, bool) or not isinstance(value, wanted if wanted is not float else (int, float)):
                raise ValueError(f"the cross-validation recipe's {item.name} must be a {wanted.__name__}")
            values[item.name] = value
        if values["architecture"] not in _CONFIGS:
            raise ValueError(f"no demo cross-validation for {values['architecture']!r}")
        return cls(**values)

    def config(self) -> Any:
        return _CONFIGS[self.architecture].preset(self.preset)

    def train_fold(self, fold: Any, number: int) -> TrainedModel:
        """One fold's network: the demo recipe on `fold` (a crossval.RealSet of the training folds)."""
        common = {
            "seed": self.seed + number,
            "preset": self.preset,
            "epochs_scale": self.epochs_scale,
            "validation_fraction": self.validation_fraction,
            "real": fold.data,
        }
        if self.architecture == "vf_glaucoma":
            return train_demo_vf(**common)
        train = train_demo_dr if self.architecture == "zoom_in_net" else train_demo_fundus_glaucoma
        return train(synthetic=self.synthetic, generated=self.generated(), **common)

    def generated(self) -> datasets.FundusSet | None:
        """The run's generated photographs (seeded by the run's seed), made once per process and shared by the
        run and its folds."""
        if self.architecture == "vf_glaucoma" or not self.synthetic:
            return None
        return _generated_photographs(self.architecture, self.synthetic, self.seed, self.preset)


_CONFIGS: dict[str, Any] = {
    "zoom_in_net": ZoomInNetConfig,
    "fundus_glaucoma": FundusGlaucomaConfig,
    "vf_glaucoma": VFGlaucomaConfig,
}


@functools.lru_cache(maxsize=1)
def _generated_photographs(architecture: str, count: int, seed: int, preset: str) -> datasets.FundusSet:
    if architecture == "zoom_in_net":
        return generated_dr_photographs(count, seed=seed, size=ZoomInNetConfig.preset(preset).highres_size)
    return generated_glaucoma_photographs(count, seed=seed, size=FundusGlaucomaConfig.preset(preset).view_size)


def release_generated_photographs() -> None:
    """Free the shared generated photographs (about 120 MB for the DR grader's 600) once a run is over."""
    _generated_photographs.cache_clear()


# The card entries of the cross-validation: where it stands, and its pooled out-of-fold figures once measured.
CROSS_VALIDATION = "cross_validation"
CROSS_VALIDATED = "metrics_real_cross_validated"


def _with_real_metrics(
    trained: TrainedModel, recipe: CrossValidationRecipe, *, folds: int, later: bool = False
) -> TrainedModel:
    """The card's real held-out figures and, with `folds`, K-fold cross-validation by subject over all the
    shipped real data: run here (`cross_validation` on the card says "done"), or with `later` only asked for
    ("queued", with the recipe, and no figure: the worker runs it, demo.cross_validation)."""
    from demo import crossval

    trained = crossval.real_held_out_card(trained)
    state = {"status": "queued" if later else "done", "folds": folds, "recipe": recipe.to_dict()}
    if folds and not later:
        try:
            trained.model_card[CROSS_VALIDATED] = crossval.cross_validate(
                recipe.architecture, recipe.train_fold, config=recipe.config(), folds=folds, seed=recipe.seed
            )
        finally:
            release_generated_photographs()
    if folds:
        trained.model_card[CROSS_VALIDATION] = state
    release_generated_photographs()
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
    cross_validation_later: bool = False,
    real: datasets.FundusSet | None = None,
    generated: datasets.FundusSet | None = None,
) -> TrainedModel:
    """The demo fundus glaucoma net: generated discs with small or large cups plus the shipped HRF photographs
    the demo trial does not use (`real` instead: a cross-validation fold, with the run's `generated`
    photographs). Its card reports the demo trial's own photographs, held out (demo.crossval)."""
    from demo import crossval

    recipe = CrossValidationRecipe("fundus_glaucoma", synthetic, seed, preset, epochs_scale, validation_fraction)
    config = recipe.config()
    if generated is None and real is None:
        generated = recipe.generated()
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
        generated=generated,
    )
    if real is not None:
        return trained
    return _with_real_metrics(trained, recipe, folds=cross_validation_folds, later=cross_validation_later)


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
    cross_validation_later: bool = False,
    real: datasets.FundusSet | None = None,
    generated: datasets.FundusSet | None = None,
) -> TrainedModel:
    """The demo DR grader: generated photographs with controlled lesions plus the shipped HRF photographs the
    demo trial does not use (`real` instead: a cross-validation fold, with the run's `generated`
    photographs). Its card reports the demo trial's own photographs, held out (demo.crossval)."""
    from demo import crossval

    recipe = CrossValidationRecipe("zoom_in_net", synthetic, seed, preset, epochs_scale, validation_fraction)
    config = recipe.config()
    if generated is None and real is None:
        generated = recipe.generated()
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
        generated=generated,
    )
    if real is not None:
        return trained
    return _with_real_metrics(trained, recipe, folds=cross_validation_folds, later=cross_validation_later)


def train_demo_vf(
    *,
    synthetic: int = 0,
    seed: int = 0,
    preset: str = "small",
    validation_fraction: float = 0.2,
    epochs_scale: float = 1.0,
    progress: Callable[[TrainingProgress], None] | None = None,
    cross_validation_folds: int = 0,
    cross_validation_later: bool = False,
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
    recipe = CrossValidationRecipe("vf_glaucoma", 0, seed, preset, epochs_scale, validation_fraction)
    return _with_real_metrics(trained, recipe, folds=cross_validation_folds, later=cross_validation_later)
