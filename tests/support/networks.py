"""Shared fixtures for the network tests: thread set-up and small generated data sets."""

from __future__ import annotations

import functools
import types
from collections.abc import Sequence

import numpy as np
import torch

from diagnosis.networks.inference import configure_threads
from diagnosis.networks.synthetic import SyntheticFundus, generate_fundus_set
from diagnosis.training.datasets import PLOT_SIZE, plot_array
from trials.uploads.visual_field import BLIND_SPOT_POINTS, COORDINATES, render_pattern_deviation_plot


def use_test_threads() -> None:
    # Two threads at most: the suite runs next to other processes on a 2-core machine.
    configure_threads(min(2, torch.get_num_threads()))


@functools.cache
def fundus_set(count: int, seed: int, size: int = 256) -> tuple[SyntheticFundus, ...]:
    """Generated photographs, cached per process (several test classes share the same sets)."""
    return tuple(generate_fundus_set(count, seed=seed, size=size))


def pd_plot(levels: Sequence[float | None], eye: str = "OD", size: int = 64) -> np.ndarray:
    """3 x size x size uint8: the Pattern Deviation probability plot of 54 PD probability levels (right-eye
    order; 1.0 not significant, 0.05 / 0.02 / 0.01 / 0.005, None at the blind spot) drawn by the upload
    pipeline's renderer at its stored size and resized as training and the workers resize it."""
    analysis = types.SimpleNamespace(eye=eye, pattern_deviation_probability=tuple(levels))
    return plot_array(render_pattern_deviation_plot(analysis, size=PLOT_SIZE), size)  # type: ignore[arg-type]


def glaucoma_like_fields(
    count: int, seed: int, size: int, *, blank_plots: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(plots N x 3 x size^2 uint8, indices N x 3 raw VFI/MD/PSD, labels N): half glaucomatous.

    Glaucomatous fields get an arcuate-like cluster of depressed points in one hemifield (above or
    below the horizontal meridian, as glaucoma respects it); normal fields a few scattered mild points.
    The indices overlap between the groups (alone they separate them with an AUC of about 0.9), so a
    network that reads the plot must do better than one that reads the indices. `blank_plots` gives every
    field the plot of a field with no flagged point (for the test that the plot is what is learned).
    """
    rng = np.random.default_rng(seed)
    points = np.array(COORDINATES, dtype=float)
    blind = [p - 1 for p in BLIND_SPOT_POINTS]
    plots, indices, labels = [], [], []
    for i in range(count):
        glaucoma = i % 2 == 1
        p = np.ones(len(points))
        if glaucoma:
            superior = rng.uniform() < 0.5
            hemifield = points[:, 1] > 0 if superior else points[:, 1] < 0
            eccentricity = np.hypot(points[:, 0], points[:, 1])
            arc = hemifield & (eccentricity > rng.uniform(8, 12)) & (eccentricity < rng.uniform(20, 26))
            arc &= points[:, 0] < rng.uniform(0, 15)  # nasal side of the arc
            p[arc] = rng.choice([0.005, 0.01, 0.02], size=int(arc.sum()))
        scattered = rng.choice(len(points), size=int(rng.integers(0, 4)), replace=False)
        p[scattered] = np.minimum(p[scattered], rng.choice([0.05, 0.02], size=len(scattered)))
        if blank_plots:
            p[:] = 1.0
        levels: list[float | None] = [float(v) for v in p]
        for index in blind:
            levels[index] = None
        eye = "OD" if rng.uniform() < 0.5 else "OS"
        plots.append(pd_plot(levels, eye=eye, size=size))
        md = rng.normal(-6.0 if glaucoma else -2.0, 3.0)
        indices.append(
            [
                float(np.clip(rng.normal(85 if glaucoma else 95, 8), 0, 100)),
                md,
                abs(rng.normal(6 if glaucoma else 3, 2.5)),
            ]
        )
        labels.append(int(glaucoma))
    return (
        torch.from_numpy(np.stack(plots)).contiguous(),
        torch.tensor(indices, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.long),
    )
