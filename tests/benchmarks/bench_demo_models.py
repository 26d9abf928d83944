"""The three demo networks as `seed_demo` trains them: time, and their figures on real data they never saw.

Run on demand (not a unit test):

    .venv/bin/python -m tests.benchmarks.bench_demo_models [--folds 3] [--epochs-scale 1.0] [--only vf_glaucoma]

For each network: the wall-clock time of what `make run` waits for before the server starts (training and
the real held-out card: seed_demo); the model card's `metrics` (the demo trial's own real photographs or
patients' fields, held out of training); its validation-split figures (generated photographs only for the
photograph networks, held-out patients for the visual-field net); and, with `--folds K`, the time and the
pooled out-of-fold figures of K-fold cross-validation over all the shipped real data, split by subject (K
more training runs per network, sharing one set of generated photographs), which the worker runs after the
server has started (demo/cross_validation.py; here in one process, as `seed_demo --cross-validate-here`
does). The load average is printed before and after: the machine may be shared. The figures the model
cards and the README quote come from here.
"""

from __future__ import annotations

import argparse
import os
import time

from demo import crossval
from demo.training import (
    CrossValidationRecipe,
    release_generated_photographs,
    train_demo_dr,
    train_demo_fundus_glaucoma,
    train_demo_vf,
)
from diagnosis.networks.inference import configure_threads

RECIPES = {
    "zoom_in_net": lambda scale, folds: train_demo_dr(
        epochs_scale=scale, cross_validation_folds=folds, cross_validation_later=True
    ),
    "fundus_glaucoma": lambda scale, folds: train_demo_fundus_glaucoma(
        synthetic=300, epochs_scale=scale, cross_validation_folds=folds, cross_validation_later=True
    ),
    "vf_glaucoma": lambda scale, folds: train_demo_vf(
        epochs_scale=scale, cross_validation_folds=folds, cross_validation_later=True
    ),
}


def _load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation over the real data (0: off)")
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--only", choices=sorted(RECIPES), action="append")
    args = parser.parse_args()
    configure_threads()
    print(f"cores {os.cpu_count()}, torch threads configured; epochs scale {args.epochs_scale}; {_load()}")
    first_run = later = 0.0
    for architecture in args.only or sorted(RECIPES):
        started = time.perf_counter()
        trained = RECIPES[architecture](args.epochs_scale, args.folds)
        seconds = time.perf_counter() - started
        first_run += seconds
        card = trained.model_card
        print(f"\n{architecture}: {seconds:.0f} s before the server starts (training run {trained.seconds:.0f} s)")
        print(f"  real held out (card metrics): {card['metrics']}")
        print(f"  {card['real_data_performance']}")
        print(f"  validation split: {card['metrics_validation_split']}")
        if args.folds:
            recipe = CrossValidationRecipe.from_dict(card["cross_validation"]["recipe"])
            started = time.perf_counter()
            try:
                figures = crossval.cross_validate(
                    architecture, recipe.train_fold, config=recipe.config(), folds=args.folds, seed=recipe.seed
                )
            finally:
                release_generated_photographs()
            seconds = time.perf_counter() - started
            later += seconds
            print(f"  real, {args.folds}-fold cross-validated by subject ({seconds:.0f} s, on the worker): {figures}")
    print(f"\nbefore the server starts: {first_run:.0f} s; cross-validation on the worker afterwards: {later:.0f} s")
    print(_load())


if __name__ == "__main__":
    main()
