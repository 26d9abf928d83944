"""How each architecture is trained: one recipe per network spec, read by train_model and the demo seeding.

`RECIPES` is keyed like `diagnosis.networks.specs.NETWORKS` (a test keeps the two in step). A recipe says
what the network reads for training (photographs or visual fields), how to train it from given data and
for the demo, its training plan, and the words its model card and the command's messages use.
Pure (no Django): registration is the caller's.
The demo recipes (what the shipped demo data trains) are registered by the demo app from its
`AppConfig.ready()` (`register_demo_recipe`); without the demo app, `--demo` is refused with a clear message.
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
from diagnosis.training.runner import TrainedModel

PHOTOGRAPHS: Final = "photographs"
VISUAL_FIELDS: Final = "visual_fields"


@dataclass(frozen=True)
class TrainingRecipe:
    spec: NetworkSpec
    reads: Literal["photographs", "visual_fields"]
    # photographs: train(data=FundusSet | None, synthetic=N, ...); visual fields: train(fields=[...], ...)
    train: Callable[..., TrainedModel]
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


RECIPES: dict[str, TrainingRecipe] = {
    recipe.architecture: recipe
    for recipe in (
        TrainingRecipe(
            spec=NETWORKS[zoom_in_net.ARCHITECTURE],
            reads=PHOTOGRAPHS,
            train=runner.train_dr,
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


# architecture -> recipe(*, seed, preset, validation_fraction, epochs_scale, progress[, synthetic]) -> TrainedModel
_demo_recipes: dict[str, Callable[..., Any]] = {}


def register_demo_recipe(architecture: str, recipe: Callable[..., Any]) -> None:
    _demo_recipes[architecture] = recipe


def demo_recipe(architecture: str) -> Callable[..., Any]:
    """The registered demo recipe of ``architecture``; ValueError (shown by the command) if there is none."""
    try:
        return _demo_recipes[architecture]
    except KeyError:
        raise ValueError(
            f"There is no demo recipe for {architecture}: the demo app (INSTALLED_APPS 'demo') provides them."
        ) from None
