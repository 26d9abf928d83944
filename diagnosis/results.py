"""AI results as a person reads them: ICDR wording, probabilities as percentages, the call at the model
version's operating point, and the case's result combined from the predictions on each of its files.

The combination follows the model's network spec (``NetworkSpec.combination`` says it in words): the case takes
the highest grade and the highest probability among its files, so the worst photograph decides (for DR the most
severe field decides an eye's grade; for glaucoma the most suspicious view of the disc). No database access
here: the selectors pass the predictions in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diagnosis.models import ModelVersion, Prediction, ResultKind

if TYPE_CHECKING:
    from trials.models import CaseFile

# International Clinical Diabetic Retinopathy severity scale (Wilkinson et al., Ophthalmology 2003).
ICDR_GRADES = {
    0: "No apparent DR",
    1: "Mild NPDR",
    2: "Moderate NPDR",
    3: "Severe NPDR",
    4: "PDR",
}
ICDR_DESCRIPTIONS = {
    0: "no apparent retinopathy",
    1: "mild non-proliferative diabetic retinopathy (microaneurysms only)",
    2: "moderate non-proliferative diabetic retinopathy",
    3: "severe non-proliferative diabetic retinopathy",
    4: "proliferative diabetic retinopathy",
}
POSITIVE_LABELS = {
    "referable_probability": "Referable DR (grade 2 or worse)",
    "glaucoma_probability": "Glaucoma",
}
PROBABILITY_NAMES = {
    "referable_probability": "referable-DR probability (grade 2 or worse)",
    "glaucoma_probability": "glaucoma probability",
}


def grade_label(grade: int | None) -> str:
    """ "2 · Moderate NPDR"; empty for no grade."""
    if grade is None:
        return ""
    return f"{grade} · {ICDR_GRADES.get(grade, 'unknown grade')}"


def percent(probability: float) -> str:
    """A probability as a whole percentage, never rounded to a certainty it does not have."""
    if 0 < probability < 0.005:
        return "<1%"
    if 0.995 <= probability < 1:
        return ">99%"
    return f"{round(probability * 100)}%"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float

    @property
    def percent(self) -> str:
        return percent(self.value)


@dataclass(frozen=True)
class Call:
    """The positive/negative call of a probability at the model version's operating point (``>=`` is positive)."""

    positive: bool
    label: str
    name: str  # what the probability is of, in words
    probability: float
    threshold: float

    @property
    def percent(self) -> str:
        """As ``percent``, with a decimal where rounding would show it equal to the operating point."""
        shown = percent(self.probability)
        if self.probability != self.threshold and shown == f"{round(self.threshold * 100)}%":
            return f"{self.probability * 100:.1f}%"
        return shown

    @property
    def threshold_percent(self) -> str:
        return f"{self.threshold * 100:g}%"


def call(model: ModelVersion, probability: float | None) -> Call | None:
    if probability is None:
        return None
    positive = probability >= model.operating_threshold
    labels = model.spec.positive_labels
    name = PROBABILITY_NAMES.get(model.spec.positive_field, "probability")
    return Call(positive, labels[0] if positive else labels[1], name, probability, model.operating_threshold)


@dataclass
class FileResult:
    """One prediction: the file it read and what it says."""

    prediction: Prediction
    file_label: str
    grade_label: str = ""
    grade_description: str = ""
    bars: list[Bar] = field(default_factory=list)
    call: Call | None = None

    @property
    def case_file(self) -> CaseFile | None:
        return self.prediction.case_file

    @property
    def viewable(self) -> bool:
        """An overlay to show over the photograph it was drawn on."""
        return bool(self.prediction.attention_overlay and self.case_file is not None and self.case_file.preview)


@dataclass
class ModelResult:
    """A model's predictions on a case's files and the case's result combined from them."""

    model: ModelVersion
    files: list[FileResult]
    combination: str
    grade: int | None = None
    grade_label: str = ""
    grade_description: str = ""
    grade_from: str = ""
    call: Call | None = None
    call_from: str = ""
    unreliable: bool = False


def deciding(predictions: Iterable[Prediction], field_name: str) -> Prediction | None:
    """The prediction with the highest value of ``field_name`` (the worst file decides); None if none has one.
    Ties go to the earliest file."""
    best: Prediction | None = None
    for p in predictions:
        value = getattr(p, field_name)
        if (
            p.kind == ResultKind.PREDICTION
            and value is not None
            and (best is None or value > getattr(best, field_name))
        ):
            best = p
    return best


def _file_label(prediction: Prediction, n: int, total: int) -> str:
    case_file = prediction.case_file
    if case_file is None:
        return "File not recorded (predicted before files were recorded)"
    what = "Photograph" if case_file.modality == "fundus" else case_file.get_modality_display()
    numbered = f"{what} {n} of {total}" if total > 1 else what
    size = f" · {case_file.width}×{case_file.height}" if case_file.width else ""
    return f"{numbered}{size} · {case_file.sha256[:12]}"


def _file_result(prediction: Prediction, label: str) -> FileResult:
    model = prediction.model_version
    result = FileResult(prediction, label)
    if prediction.kind != ResultKind.PREDICTION:
        return result
    if prediction.grade is not None:
        result.grade_label = grade_label(prediction.grade)
        result.grade_description = ICDR_DESCRIPTIONS.get(prediction.grade, "")
    positive = getattr(prediction, model.spec.positive_field)
    if prediction.class_probabilities:
        result.bars = [
            Bar(grade_label(grade), float(value)) for grade, value in enumerate(prediction.class_probabilities)
        ]
    elif positive is not None:
        result.bars = [Bar(POSITIVE_LABELS.get(model.spec.positive_field, "Probability"), float(positive))]
    result.call = call(model, positive)
    return result


def model_results(predictions: Sequence[Prediction]) -> list[ModelResult]:
    """Per model version (in the order given), its predictions per file and the case's combined result."""
    by_model: dict[object, list[Prediction]] = {}
    for p in predictions:
        by_model.setdefault(p.model_version_id, []).append(p)
    results = []
    for group in by_model.values():
        group.sort(key=lambda p: (p.case_file.created_at if p.case_file else p.created_at, p.created_at))
        model = group[0].model_version
        files = [_file_result(p, _file_label(p, n, len(group))) for n, p in enumerate(group, start=1)]
        label_of = {id(f.prediction): f.file_label for f in files}
        result = ModelResult(model, files, model.spec.combination)
        result.unreliable = all(p.kind != ResultKind.PREDICTION for p in group)
        worst_grade = deciding(group, "grade")
        if worst_grade is not None:
            result.grade = worst_grade.grade
            result.grade_label = grade_label(worst_grade.grade)
            result.grade_description = ICDR_DESCRIPTIONS.get(worst_grade.grade or 0, "")
            result.grade_from = label_of[id(worst_grade)]
        positive_field = model.spec.positive_field
        worst = deciding(group, positive_field)
        if worst is not None:
            result.call = call(model, getattr(worst, positive_field))
            result.call_from = label_of[id(worst)]
        results.append(result)
    return results
