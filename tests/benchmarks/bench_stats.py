"""Speed of the statistics core: `python -m tests.benchmarks.bench_stats [--scores 1000000] [--rounds 5]`.

Prints, in one run on the same data:
- AUC + DeLong variance (``evaluation.stats.roc.auc_delong``) on N scores next to scikit-learn's
  ``roc_auc_score`` (AUC alone): best-of-rounds seconds, the time ratio (target at most 1.0x) and the largest
  AUC difference (target 1e-12), for continuous scores and for scores with many ties;
- OR-MRMC (``or_mrmc``) for 2 modalities x 10 readers x 1,000 cases, jackknife and DeLong covariances, and
  ``analyze_reads``'s whole path (parse the 20,000-row CSV, every figure, with a threshold).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from evaluation.stats.mrmc import or_mrmc
from evaluation.stats.reads import parse_reads_csv
from evaluation.stats.report import analyze
from evaluation.stats.roc import auc_delong


def best_of(rounds: int, work: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_auc(scores: int, rounds: int) -> None:
    rng = np.random.default_rng(2026)
    truth = rng.integers(0, 2, scores)
    continuous = rng.normal(size=scores) + 0.8 * truth
    for label, values in (("continuous", continuous), ("ties (1 decimal)", np.round(continuous, 1))):
        ours_s, ours = best_of(rounds, lambda v=values: auc_delong(truth, v))
        theirs_s, theirs = best_of(rounds, lambda v=values: roc_auc_score(truth, v))
        print(
            f"AUC+DeLong, {scores:,} scores, {label}: visus {ours_s:.3f} s, scikit-learn roc_auc_score (AUC only) "
            f"{theirs_s:.3f} s, ratio {ours_s / theirs_s:.2f}x (target <= 1.0x); "
            f"|AUC difference| {abs(ours.auc - theirs):.1e} (target <= 1e-12); SE {ours.se:.2e}",
            flush=True,
        )


def reads_csv(ratings: np.ndarray, truth: np.ndarray) -> str:
    out = io.StringIO()
    out.write("reader,modality,case,truth,rating\n")
    t_count, r_count, n_count = ratings.shape
    for t in range(t_count):
        for r in range(r_count):
            for c in range(n_count):
                out.write(f"{r + 1},{t + 1},{c + 1},{int(truth[c])},{ratings[t, r, c]:.3f}\n")
    return out.getvalue()


def bench_mrmc(rounds: int, readers: int = 10, cases: int = 1000) -> None:
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 2, cases).astype(bool)
    case_effect = rng.normal(size=cases)
    ratings = np.stack(
        [
            case_effect
            + rng.normal(size=(readers, cases)) * 0.8
            + truth * (1.2 + 0.2 * t + rng.normal(0, 0.2, (readers, 1)))
            for t in range(2)
        ]
    )
    for method in ("jackknife", "delong"):
        seconds, result = best_of(rounds, lambda m=method: or_mrmc(ratings, truth, covariance=m))
        print(
            f"OR-MRMC, 2 modalities x {readers} readers x {cases:,} cases, {method}: {seconds * 1000:.1f} ms "
            f"(F {result.rrrc.statistic:.3f}, ddf {result.rrrc.ddf:.1f}, p {result.rrrc.p_value:.3g})",
            flush=True,
        )
    text = reads_csv(ratings, truth)
    seconds, _ = best_of(rounds, lambda: analyze(parse_reads_csv(io.StringIO(text)), threshold=0.5))
    print(
        f"analyze_reads path (parse {ratings.size:,} rows + all figures, --threshold): {seconds * 1000:.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bench_auc(args.scores, args.rounds)
    bench_mrmc(args.rounds)


if __name__ == "__main__":
    main()
