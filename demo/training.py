"""The demo training recipes: the small demo networks trained on the data shipped in ``demo/data`` (HRF
photographs, visualFields 24-2 fields) plus generated photographs. Used by ``seed_demo`` and registered for
``train_model --demo`` (see ``DemoConfig.ready``). Generic training lives in ``diagnosis.training``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from diagnosis.networks.fundus_glaucoma import FundusGlaucomaConfig
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
HRF_DEMO_GRADES = {"diabetic_retinopathy": 2, "glaucoma": 0, "healthy": 0}
HRF_DEMO_GLAUCOMA = {"diabetic_retinopathy": 0, "glaucoma": 1, "healthy": 0}


def hrf_demo_set(size: int, *, glaucoma: bool = False) -> datasets.FundusSet:
    """The shipped HRF photographs with a demo label: for DR, DR photographs as grade 2 and others 0; for
    glaucoma, the glaucoma photographs 1 and the others (healthy and DR) 0."""
    import csv

    from PIL import Image

    rows = list(csv.DictReader((DEMO_DATA / "hrf" / "labels.csv").read_text().splitlines()))
    table = HRF_DEMO_GLAUCOMA if glaucoma else HRF_DEMO_GRADES
    labels = datasets.GLAUCOMA_LABELS if glaucoma else datasets.GRADE_LABELS
    items = [(row["image"], Image.open(DEMO_DATA / "hrf" / row["image"]), table[row["label"]]) for row in rows]
    return datasets.fundus_set(items, size, labels)


def train_demo_fundus_glaucoma(
    *,
    synthetic: int = 300,
    seed: int = 0,
    preset: str = "small",
    validation_fraction: float = 0.2,
    epochs_scale: float = 1.0,
    progress: Callable[[TrainingProgress], None] | None = None,
) -> TrainedModel:
    """The demo fundus glaucoma net: generated discs with small or large cups plus the shipped HRF photographs."""
    config = FundusGlaucomaConfig.preset(preset)
    return train_fundus_glaucoma_model(
        data=hrf_demo_set(config.view_size, glaucoma=True),
        synthetic=synthetic,
        seed=seed,
        preset=preset,
        validation_fraction=validation_fraction,
        plan=demo_fundus_glaucoma_plan(epochs_scale),
        progress=progress,
        description=f"{synthetic} generated photographs (glaucoma: cup-to-disc ratio 0.65-0.9, healthy 0.2-0.45) and "
        "the 20 shipped HRF photographs (glaucoma 1; healthy and DR 0)",
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
) -> TrainedModel:
    """The demo DR grader: generated photographs with controlled lesions plus the shipped HRF photographs."""
    config = ZoomInNetConfig.preset(preset)
    return train_dr(
        data=hrf_demo_set(config.highres_size),
        synthetic=synthetic,
        seed=seed,
        preset=preset,
        validation_fraction=validation_fraction,
        plan=demo_dr_plan(epochs_scale),
        progress=progress,
        description=f"{synthetic} generated photographs with controlled lesions (grade from the lesions) and the "
        "20 shipped HRF photographs (DR as grade 2, others 0)",
    )


def train_demo_vf(
    *,
    seed: int = 0,
    preset: str = "small",
    validation_fraction: float = 0.2,
    epochs_scale: float = 1.0,
    progress: Callable[[TrainingProgress], None] | None = None,
) -> TrainedModel:
    """The demo glaucoma net: the shipped real 24-2 fields, healthy controls against glaucoma patients."""
    fields = demo_visual_fields()
    return train_vf(
        fields=fields,
        seed=seed,
        preset=preset,
        validation_fraction=validation_fraction,
        plan=demo_vf_plan(epochs_scale),
        progress=progress,
        description=f"{len(fields)} real 24-2 fields shipped with Visus (visualFields package: SUNY-IU healthy "
        "controls and glaucoma test-retest series)",
    )
