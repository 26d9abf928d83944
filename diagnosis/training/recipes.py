"""How each architecture is trained: one recipe per network spec, read by train_model and the demo seeding.

`RECIPES` is keyed like `diagnosis.networks.specs.NETWORKS` (a test keeps the two in step). A recipe says
what the network reads for training (photographs or visual fields), how to train it from given data and
for the demo, its training plan, and the words its model card and the command's messages use.
Pure (no Django): registration is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from diagnosis.networks import fundus_glaucoma, vf_glaucoma, zoom_in_net
from diagnosis.networks.fundus_glaucoma import FundusGlaucomaConfig
from diagnosis.networks.specs import NETWORKS, NetworkSpec
from diagnosis.networks.zoom_in_net import ZoomInNetConfig
from diagnosis.training import datasets, runner
from diagnosis.training.loop import TrainingProgress
from diagnosis.training.runner import TrainedModel

PHOTOGRAPHS: Final = "photographs"
VISUAL_FIELDS: Final = "visual_fields"


@dataclass(frozen=True)
class TrainingRecipe:
    spec: NetworkSpec
    reads: Literal["photographs", "visual_fields"]
    # photographs: train(data=FundusSet | None, synthetic=N, ...); visual fields: train(fields=[...], ...)
    train: Callable[..., TrainedModel]
    # train_demo(synthetic=N, seed=, preset=, validation_fraction=, epochs_scale=, progress=)
    train_demo: Callable[..., TrainedModel]
    plan: Callable[[float], Any]  # epochs scale -> training plan
    demo_name: str  # the name seed_demo registers it under
    demo_synthetic: Callable[[int], int]  # the demo's generated photographs, from the DR grader's count
    labels: tuple[str, range]  # labels CSV column and values
    reference: str  # what a trial's reference standard gives it
    view_size: Callable[[str], int] = lambda preset: 0  # preset -> side of the photographs it trains on
    generated: str = ""  # what --synthetic generates ("" when it cannot train on generated data)

    @property
    def architecture(self) -> str:
        return self.spec.architecture


def _train_demo_vf(
    *,
    synthetic: int = 0,
    seed: int = 0,
    preset: str = "small",
    validation_fraction: float = 0.2,
    epochs_scale: float = 1.0,
    progress: Callable[[TrainingProgress], None] | None = None,
) -> TrainedModel:
    if synthetic:
        raise ValueError("The visual-field net trains on the shipped real fields; it has no generated data.")
    return runner.train_demo_vf(
        seed=seed, preset=preset, validation_fraction=validation_fraction, epochs_scale=epochs_scale, progress=progress
    )


RECIPES: dict[str, TrainingRecipe] = {
    recipe.architecture: recipe
    for recipe in (
        TrainingRecipe(
            spec=NETWORKS[zoom_in_net.ARCHITECTURE],
            reads=PHOTOGRAPHS,
            train=runner.train_dr,
            train_demo=runner.train_demo_dr,
            plan=runner.demo_dr_plan,
            demo_name="dr-demo",
            demo_synthetic=lambda base: base,
            labels=datasets.GRADE_LABELS,
            reference="reference grades",
            view_size=lambda preset: ZoomInNetConfig.preset(preset).highres_size,
            generated="generated photographs with controlled lesions",
        ),
        TrainingRecipe(
            spec=NETWORKS[vf_glaucoma.ARCHITECTURE],
            reads=VISUAL_FIELDS,
            train=runner.train_vf,
            train_demo=_train_demo_vf,
            plan=runner.demo_vf_plan,
            demo_name="vf-glaucoma-demo",
            demo_synthetic=lambda base: 0,
            labels=datasets.GLAUCOMA_LABELS,
            reference="glaucoma references",
        ),
        TrainingRecipe(
            spec=NETWORKS[fundus_glaucoma.ARCHITECTURE],
            reads=PHOTOGRAPHS,
            train=runner.train_fundus_glaucoma_model,
            train_demo=runner.train_demo_fundus_glaucoma,
            plan=runner.demo_fundus_glaucoma_plan,
            demo_name="fundus-glaucoma-demo",
            # Half the DR grader's count (at least 40), as seed_demo has always trained it.
            demo_synthetic=lambda base: max(base // 2, 40),
            labels=datasets.GLAUCOMA_LABELS,
            reference="glaucoma references",
            view_size=lambda preset: FundusGlaucomaConfig.preset(preset).view_size,
            generated="generated photographs with small (healthy) or large (glaucoma) optic cups",
        ),
    )
}


def training_recipe(architecture: str) -> TrainingRecipe:
    try:
        return RECIPES[architecture]
    except KeyError:
        raise ValueError(f"no training recipe for {architecture!r}; known: {', '.join(RECIPES)}") from None
