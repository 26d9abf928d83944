"""Training recipes that apps above diagnosis provide for ``train_model --demo``.

Diagnosis knows how to train a network on data it is given; which data make the demo networks (the files
shipped in ``demo/data``) is the demo app's business, so the demo app registers one recipe per architecture
from its ``AppConfig.ready()``. Without the demo app installed, ``--demo`` is refused with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
