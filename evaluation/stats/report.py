"""The figures ``analyze_reads`` prints: per-reader and per-modality AUC, OR-MRMC of the modalities and, with a
threshold, sensitivity and specificity per modality pooled over readers. ``analyze`` returns one
JSON-serialisable dict; ``format_report`` renders it as text.
"""

from __future__ import annotations

import math

from evaluation.stats.mrmc import MrmcResult, foms_and_jackknife, jackknife_covariance, or_mrmc, reader_average
from evaluation.stats.power import study_plan
from evaluation.stats.proportions import proportion
from evaluation.stats.reads import ReadsTable
from evaluation.stats.roc import auc_delong


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _clean(value):
    """Replace inf/nan by None so the dict is strict JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return _json_number(value)
    return value


def _mrmc_summary(result: MrmcResult, modalities: list[str]) -> dict:
    rrrc = result.rrrc
    summary = result.as_dict()
    for test in ("random_readers_random_cases", "fixed_readers_random_cases", "random_readers_fixed_cases"):
        for difference in summary[test]["differences"]:
            difference["first"] = modalities[difference["first"]]
            difference["second"] = modalities[difference["second"]]
    summary["modalities"] = [
        {"modality": modalities[t], **estimate} for t, estimate in enumerate(summary["modalities"])
    ]
    first = rrrc.differences[0]
    summary["headline"] = {
        "difference": f"{modalities[first.first]} - {modalities[first.second]}",
        "estimate": first.estimate,
        "ci95": list(first.ci),
        "F": rrrc.statistic,
        "ndf": rrrc.ndf,
        "ddf": rrrc.ddf,
        "p_value": rrrc.p_value,
    }
    return summary


def analyze(table: ReadsTable, threshold: float | None = None, effect: float | None = None) -> dict:
    """All figures of ``analyze_reads`` for a validated reads table; with ``effect``, the power of this study's
    design to detect that AUC difference and the cases or readers that would give 80% (two modalities)."""
    t_count, r_count = len(table.modalities), len(table.readers)
    diseased = int(table.truth.sum())
    report: dict = {
        "cases": len(table.cases),
        "diseased": diseased,
        "non_diseased": len(table.cases) - diseased,
        "readers": table.readers,
        "modalities": table.modalities,
        "standalone_modalities": table.standalone_modalities(),
        "notes": [],
    }
    per_reader = []
    for t, modality in enumerate(table.modalities):
        for r, reader in enumerate(table.readers):
            per_reader.append(
                {"modality": modality, "reader": reader, **auc_delong(table.truth, table.ratings[t, r]).as_dict()}
            )
    report["auc_per_reader"] = per_reader
    per_modality = []
    foms, jack = foms_and_jackknife(table.ratings, table.truth, "auc")
    covariance = jackknife_covariance(jack)
    for t, modality in enumerate(table.modalities):
        if r_count >= 2:
            block = covariance[t * r_count : (t + 1) * r_count, t * r_count : (t + 1) * r_count]
            estimate = reader_average(foms[t], block)
            per_modality.append(
                {
                    "modality": modality,
                    "auc": estimate.estimate,
                    "se": estimate.se,
                    "df": estimate.df,
                    "ci95": list(estimate.ci),
                    "interval": "OR random readers and cases",
                }
            )
        else:
            single = auc_delong(table.truth, table.ratings[t, 0])
            per_modality.append(
                {
                    "modality": modality,
                    "auc": single.auc,
                    "se": single.se,
                    "df": None,
                    "ci95": list(single.ci),
                    "interval": "DeLong (one reader)",
                }
            )
    report["auc_per_modality"] = per_modality
    report["power"] = None
    if t_count >= 2 and r_count >= 2:
        mrmc = or_mrmc(table.ratings, table.truth)
        report["mrmc"] = _mrmc_summary(mrmc, table.modalities)
        if effect is not None and t_count == 2:
            plan = study_plan(mrmc.components, effect)
            report["power"] = {**plan.as_dict(), "summary": plan.sentence()}
        elif effect is not None:
            report["notes"].append("Power is computed for two modalities only; this study has more.")
    else:
        report["mrmc"] = None
        report["notes"].append("OR-MRMC needs at least two modalities and two readers; it was not run.")
    report["threshold"] = threshold
    if threshold is not None:
        positive = table.ratings >= threshold
        standalone = set(report["standalone_modalities"])
        rows = []
        for t, modality in enumerate(table.modalities):
            # A standalone algorithm's copies for each reader are one set of reads: count them once.
            called = positive[t, :1] if modality in standalone else positive[t]
            tp = int(called[:, table.truth].sum())
            tn = int((~called[:, ~table.truth]).sum())
            rows.append(
                {
                    "modality": modality,
                    "pooled_readers": called.shape[0],
                    "sensitivity": proportion(tp, called.shape[0] * diseased).as_dict(),
                    "specificity": proportion(tn, called.shape[0] * (len(table.cases) - diseased)).as_dict(),
                }
            )
        report["sensitivity_specificity"] = rows
        report["notes"].append(
            "Sensitivity and specificity are pooled over readers (a standalone modality counted once); their "
            "Wilson intervals treat reads as independent. The OR-MRMC of sensitivity and specificity accounts for "
            "readers and cases."
        )
        if t_count >= 2 and r_count >= 2:
            for fom in ("sensitivity", "specificity"):
                try:
                    report[f"mrmc_{fom}"] = _mrmc_summary(
                        or_mrmc(table.ratings, table.truth, fom, threshold=threshold), table.modalities
                    )
                except (ValueError, ZeroDivisionError) as error:
                    report[f"mrmc_{fom}"] = None
                    report["notes"].append(f"OR-MRMC of {fom} not run: {error}")
    return _clean(report)


def _ci(values) -> str:
    if values is None or any(v is None for v in values):
        return "(n/a)"
    return f"({values[0]:.6f}, {values[1]:.6f})"


def _number(value, digits: int = 6) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def format_report(report: dict) -> str:
    """The text ``analyze_reads`` prints."""
    out = [
        f"Cases: {report['cases']} ({report['diseased']} diseased, {report['non_diseased']} non-diseased); "
        f"readers: {len(report['readers'])}; modalities: {', '.join(report['modalities'])}",
    ]
    if report["standalone_modalities"]:
        out.append(f"Standalone (same rating for every reader): {', '.join(report['standalone_modalities'])}")
    out += ["", "AUC per reader (empirical; DeLong 95% CI)", f"  {'modality':<12}{'reader':<12}{'AUC':<12}95% CI"]
    for row in report["auc_per_reader"]:
        out.append(f"  {row['modality']:<12}{row['reader']:<12}{row['auc']:<12.6f}{_ci(row['ci95'])}")
    out += ["", "AUC per modality (mean over readers; 95% CI)"]
    for row in report["auc_per_modality"]:
        df = f", df {row['df']:.2f}" if row["df"] is not None else ""
        out.append(f"  {row['modality']:<12}{row['auc']:<12.6f}{_ci(row['ci95'])}  [{row['interval']}{df}]")
    for key, title in (
        ("mrmc", "OR-MRMC of the AUC"),
        ("mrmc_sensitivity", "OR-MRMC of sensitivity"),
        ("mrmc_specificity", "OR-MRMC of specificity"),
    ):
        result = report.get(key)
        if not result:
            continue
        head = result["headline"]
        out += [
            "",
            f"{title} (Obuchowski-Rockette, {result['covariance']} covariances; random readers and random cases, "
            "Hillis ddf)",
        ]
        for difference in result["random_readers_random_cases"]["differences"]:
            out.append(
                f"  difference {difference['first']} - {difference['second']}: {difference['estimate']:.6f}  "
                f"95% CI {_ci(difference['ci95'])}"
            )
        out.append(
            f"  F {_number(head['F'])}  ndf {head['ndf']}  ddf {_number(head['ddf'])}  p {_number(head['p_value'])}"
        )
        frrc, rrfc = result["fixed_readers_random_cases"], result["random_readers_fixed_cases"]
        out.append(
            f"  fixed readers: chi2 {_number(frrc['statistic'])}  p {_number(frrc['p_value'])}  "
            f"95% CI {_ci(frrc['differences'][0]['ci95'])}"
        )
        out.append(
            f"  fixed cases: F {_number(rrfc['statistic'])}  ddf {_number(rrfc['ddf'])}  p {_number(rrfc['p_value'])}  "
            f"95% CI {_ci(rrfc['differences'][0]['ci95'])}"
        )
    if report.get("sensitivity_specificity"):
        out += [
            "",
            f"Sensitivity and specificity at rating >= {report['threshold']:g} (pooled over readers; Wilson 95% CI)",
        ]
        for row in report["sensitivity_specificity"]:
            sens, spec = row["sensitivity"], row["specificity"]
            out.append(
                f"  {row['modality']:<12}"
                f"sensitivity {sens['estimate']:.6f} ({sens['successes']}/{sens['total']}) {_ci(sens['wilson_95ci'])}  "
                f"specificity {spec['estimate']:.6f} ({spec['successes']}/{spec['total']}) {_ci(spec['wilson_95ci'])}"
            )
    if report.get("power"):
        out += ["", f"Power (OR-MRMC, Hillis-Obuchowski): {report['power']['summary']}"]
    if report["notes"]:
        out += ["", *[f"Note: {note}" for note in report["notes"]]]
    return "\n".join(out) + "\n"
