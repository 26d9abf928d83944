"""The catalogue of questions a trial's reading form is built from (pure; no Django)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Question:
    key: str
    label: str
    kind: str  # "choice", "boolean", "integer", "marks"
    choices: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    minimum: int | None = None
    maximum: int | None = None
    modalities: frozenset[str] = frozenset({"fundus", "visual_field", "oct"})


YES_NO = (("yes", "Yes"), ("no", "No"))

CATALOGUE: dict[str, Question] = {
    q.key: q
    for q in (
        Question(
            "icdr_grade",
            "ICDR diabetic retinopathy grade",
            "choice",
            (
                ("0", "0 No apparent retinopathy"),
                ("1", "1 Mild non-proliferative"),
                ("2", "2 Moderate non-proliferative"),
                ("3", "3 Severe non-proliferative"),
                ("4", "4 Proliferative"),
            ),
            modalities=frozenset({"fundus"}),
        ),
        Question("referable_dr", "Referable diabetic retinopathy", "boolean", YES_NO, modalities=frozenset({"fundus"})),
        Question("dme", "Diabetic macular oedema", "boolean", YES_NO, modalities=frozenset({"fundus", "oct"})),
        Question("gradable", "Image gradable", "boolean", YES_NO),
        Question("confidence", "Confidence (0-100)", "integer", minimum=0, maximum=100),
        Question(
            "glaucoma",
            "Glaucoma",
            "choice",
            (("yes", "Yes"), ("no", "No"), ("suspect", "Suspect")),
            modalities=frozenset({"fundus", "visual_field", "oct"}),
        ),
        Question("vf_reliable", "Visual field reliable", "boolean", YES_NO, modalities=frozenset({"visual_field"})),
        Question("lesion_marks", "Lesion marks", "marks", modalities=frozenset({"fundus"})),
    )
}

CATALOGUE_CHOICES = [(q.key, q.label) for q in CATALOGUE.values()]


def unknown_questions(keys: list[str]) -> list[str]:
    return [key for key in keys if key not in CATALOGUE]
