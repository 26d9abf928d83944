"""Upload inputs the tests build by hand."""

from __future__ import annotations

from trials.uploads.visual_field import N_POINTS


def vf_csv(eye="OD", *, fl=1, checks=14, fp=3, fn=2, sens=28.0) -> bytes:
    values = [("" if i in (26, 35) else f"{sens - (i % 5):g}") for i in range(1, N_POINTS + 1)]
    header = [
        "eye",
        "age",
        *[f"s{i}" for i in range(1, N_POINTS + 1)],
        "fixation_losses",
        "fixation_checks",
        "false_positives",
        "false_negatives",
    ]
    row = [eye, "63", *values, str(fl), str(checks), str(fp), str(fn)]
    return (",".join(header) + "\n" + ",".join(row) + "\n").encode()
