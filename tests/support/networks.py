"""Shared fixtures for the network tests: thread set-up and small generated data sets."""

from __future__ import annotations

import functools

import numpy as np
import torch

from diagnosis.networks.inference import configure_threads
from diagnosis.networks.synthetic import SyntheticFundus, generate_fundus_set
from diagnosis.networks.vf_glaucoma import BLIND_SPOT_INDICES_OD, HFA_24_2_POINTS_OD, render_pd_probability_plot


def use_test_threads() -> None:
    # Two threads at most: the suite runs next to other processes on a 2-core machine.
    configure_threads(min(2, torch.get_num_threads()))


@functools.cache
def fundus_set(count: int, seed: int, size: int = 256) -> tuple[SyntheticFundus, ...]:
    """Generated photographs, cached per process (several test classes share the same sets)."""
    return tuple(generate_fundus_set(count, seed=seed, size=size))


def glaucoma_like_fields(count: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(plots N x 3 x size^2 uint8, indices N x 3 raw VFI/MD/PSD, labels N): half glaucomatous.

    Glaucomatous fields get an arcuate-like cluster of depressed points in one hemifield (above or
    below the horizontal meridian, as glaucoma respects it); normal fields a few scattered mild points.
    The indices overlap between the groups so the plot matters.
    """
    rng = np.random.default_rng(seed)
    points = np.array(HFA_24_2_POINTS_OD, dtype=float)
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
            p[arc] = rng.choice([0.005, 0.004, 0.009, 0.019], size=int(arc.sum()))
        scattered = rng.choice(len(points), size=int(rng.integers(0, 4)), replace=False)
        p[scattered] = np.minimum(p[scattered], rng.choice([0.04, 0.019], size=len(scattered)))
        p[list(BLIND_SPOT_INDICES_OD)] = np.nan
        eye = "OD" if rng.uniform() < 0.5 else "OS"
        plots.append(render_pd_probability_plot(p, eye=eye, size=size))
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
        torch.from_numpy(np.stack(plots)).permute(0, 3, 1, 2).contiguous(),
        torch.tensor(indices, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.long),
    )
