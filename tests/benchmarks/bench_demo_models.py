"""The three demo networks as `seed_demo` trains them: time, and their figures on real data they never saw.

Run on demand (not a unit test):

    .venv/bin/python -m tests.benchmarks.bench_demo_models [--folds 5] [--epochs-scale 1.0] [--only vf_glaucoma]

For each network: the wall-clock training time on this machine's CPU; the model card's `metrics` (the demo
trial's own real photographs or patients' fields, held out of training); its validation-split figures
(generated photographs only for the photograph networks, held-out patients for the visual-field net); and,
with `--folds K`, pooled out-of-fold figures of K-fold cross-validation over all the shipped real data,
split by subject (K more training runs per network). The figures the model cards and the README quote
come from here.
"""

from __future__ import annotations

import argparse
import os
import time

from demo.training import train_demo_dr, train_demo_fundus_glaucoma, train_demo_vf
from diagnosis.networks.inference import configure_threads

RECIPES = {
    "zoom_in_net": lambda scale, folds: train_demo_dr(epochs_scale=scale, cross_validation_folds=folds),
    "fundus_glaucoma": lambda scale, folds: train_demo_fundus_glaucoma(
        synthetic=300, epochs_scale=scale, cross_validation_folds=folds
    ),
    "vf_glaucoma": lambda scale, folds: train_demo_vf(epochs_scale=scale, cross_validation_folds=folds),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation over the real data (0: off)")
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--only", choices=sorted(RECIPES), action="append")
    args = parser.parse_args()
    configure_threads()
    print(f"cores {os.cpu_count()}, torch threads configured; epochs scale {args.epochs_scale}")
    total = 0.0
    for architecture in args.only or sorted(RECIPES):
        started = time.perf_counter()
        trained = RECIPES[architecture](args.epochs_scale, args.folds)
        seconds = time.perf_counter() - started
        total += seconds
        card = trained.model_card
        print(f"\n{architecture}: {seconds:.0f} s (training run {trained.seconds:.0f} s)")
        print(f"  real held out (card metrics): {card['metrics']}")
        print(f"  {card['real_data_performance']}")
        print(f"  validation split: {card['metrics_validation_split']}")
        if "metrics_real_cross_validated" in card:
            print(f"  real, {args.folds}-fold cross-validated by subject: {card['metrics_real_cross_validated']}")
    print(f"\nall: {total:.0f} s")


if __name__ == "__main__":
    main()
