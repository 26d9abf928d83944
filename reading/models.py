"""Blind reading: a trial's reading set-up, reader assignments, reads with confidences and lesion marks,
hidden calibration cases, adjudication and the reference-standard lock."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from platform_core import limits
from platform_core.models import BaseModel
from trials.models import Case, CaseFile, Trial

DEFAULT_WASHOUT_DAYS = 28
DEFAULT_STALE_AFTER_DAYS = 7
GROUP_LENGTH = 40  # characters of an experience group's name (ReaderAssignment.group)


class Crossing(models.TextChoices):
    FULLY_CROSSED = "fully_crossed", "Fully crossed (every reader reads every case in every phase)"
    K_PER_CASE = "k_per_case", "k readers per case (routine grading with adjudication)"


class Phase(models.TextChoices):
    UNAIDED = "unaided", "Unaided"
    AIDED = "aided", "AI-aided"


class ExperienceGroup(models.TextChoices):
    RESIDENT = "resident", "Resident"
    ATTENDING = "attending", "Attending"
    SPECIALIST = "specialist", "Specialist"
    OPTOMETRIST = "optometrist", "Optometrist"
    GENERAL_PHYSICIAN = "general_physician", "General physician"


class ReadingSetup(BaseModel):
    """How a trial is read (one per trial), set by its manager."""

    trial = models.OneToOneField(Trial, on_delete=models.PROTECT, related_name="reading_setup")
    crossing = models.CharField(max_length=14, choices=Crossing.choices, default=Crossing.FULLY_CROSSED)
    readers_per_case = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1)], help_text="k, for k readers per case."
    )
    aided_phase = models.BooleanField(default=False, help_text="An AI-aided phase follows the unaided one.")
    washout_days = models.PositiveSmallIntegerField(
        default=DEFAULT_WASHOUT_DAYS,
        validators=[MaxValueValidator(3650)],
        help_text="Days between a reader's signed unaided read of a case and their AI-aided read of it.",
    )
    extra_groups = models.JSONField(default=list, blank=True, help_text="The trial's own experience groups.")
    grade_gap = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1)], help_text="Grades this far apart are discordant."
    )
    stale_after_days = models.PositiveSmallIntegerField(
        default=DEFAULT_STALE_AFTER_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text="A reader who has not read for this many days is flagged on the progress table.",
    )
    reference_locked_at = models.DateTimeField(null=True, blank=True)
    reference_locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["trial"]

    def __str__(self) -> str:
        return f"reading set-up of {self.trial.protocol_number}"

    def clean(self) -> None:
        groups = self.extra_groups
        if not isinstance(groups, list) or not all(isinstance(g, str) and g.strip() for g in groups):
            raise ValidationError({"extra_groups": "Experience groups must be a list of non-empty names."})
        problem = limits.list_problem(
            groups, items=limits.LIST_ITEMS, item_length=GROUP_LENGTH, plural="experience groups", singular="Group"
        )
        if problem:
            raise ValidationError({"extra_groups": problem})
        if self.aided_phase and self.washout_days < 1:
            raise ValidationError({"washout_days": "An AI-aided phase needs a washout of at least one day."})

    @property
    def phases(self) -> list[str]:
        return [Phase.UNAIDED, Phase.AIDED] if self.aided_phase else [Phase.UNAIDED]

    @property
    def groups(self) -> list[str]:
        return [*ExperienceGroup.values, *self.extra_groups]


class ReaderAssignment(BaseModel):
    """A reader reads a trial's cases in one phase, in their own order (``seed``)."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="reader_assignments")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reader_assignments")
    phase = models.CharField(max_length=8, choices=Phase.choices)
    group = models.CharField(max_length=GROUP_LENGTH)
    seed = models.BigIntegerField(editable=False)
    is_active = models.BooleanField(default=True)
    last_read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["trial", "phase", "reader__email"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "reader", "phase"], name="unique_reader_per_trial_phase"),
        ]

    def __str__(self) -> str:
        return f"{self.reader} reads {self.trial.protocol_number} ({self.phase})"


class QueuedCase(models.Model):
    """A case waiting in one reader assignment's queue, at its place in the reader's order (``rank``: the case id
    hashed with the assignment's seed, ``reading.services.ReaderOrder``). Next case walks the queue in rank order
    and serves the first case still servable (``servable_cases``), so a request costs one index probe per queued
    case it skips (usually none; in the AI-aided phase also each case still in its washout) instead of hashing
    every case of the trial.

    Which cases wait: in the unaided phase every complete case of the trial (queued when the assignment is made and
    when a case becomes complete); in the AI-aided phase the cases whose unaided read the reader signed (queued when
    the assignment is made and when the read is signed). A case leaves the queue when the reader opens it (with k
    readers per case, every queue of the phase once k readers opened it) and comes back when a manager resets that
    read. Whether it may be served now (still complete, subject enrolled, washout
    over, fewer than k readers) is checked at each walk, never stored."""

    pk = models.CompositePrimaryKey("assignment", "case")
    assignment = models.ForeignKey(ReaderAssignment, on_delete=models.CASCADE, related_name="+", db_index=False)
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="queued", db_index=False)
    rank = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["assignment", "rank"], name="queued_case_order")]

    def __str__(self) -> str:
        return f"case {self.case_id} in queue {self.assignment_id}"


class PanelMember(BaseModel):
    """A member of a trial's adjudication panel (sees prior reads of discordant cases: unblinded by design)."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="panel_members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["trial", "user__email"]
        constraints = [models.UniqueConstraint(fields=["trial", "user"], name="unique_panel_member")]

    def __str__(self) -> str:
        return f"{self.user} adjudicates {self.trial.protocol_number}"


class CalibrationCase(BaseModel):
    """A case with a known answer, interleaved unseen among a trial's cases; kept out of its analyses."""

    case = models.OneToOneField(Case, on_delete=models.PROTECT, related_name="calibration")
    known_answers = models.JSONField(help_text="{question: answer}")

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"calibration {self.case_id}"


class ReadStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SIGNED = "signed", "Signed"


class Read(BaseModel):
    """One reader's read of one case in one phase. Locked once signed; ``version`` rises with every change so
    that a stale form (another tab, a double submit) is refused instead of overwriting."""

    assignment = models.ForeignKey(ReaderAssignment, on_delete=models.PROTECT, related_name="reads")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reads")
    phase = models.CharField(max_length=8, choices=Phase.choices)
    number = models.PositiveIntegerField(help_text="The reader's own case number: no pseudonym, no site.")
    status = models.CharField(max_length=8, choices=ReadStatus.choices, default=ReadStatus.DRAFT)
    version = models.PositiveIntegerField(default=1)
    answers = models.JSONField(default=dict, blank=True)
    confidences = models.JSONField(default=dict, blank=True, help_text="{question: 0-100}")
    seconds_on_case = models.PositiveIntegerField(default=0)
    unaided_read = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="aided_read"
    )
    signed_at = models.DateTimeField(null=True, blank=True)
    signature_name = models.CharField(max_length=200, blank=True)
    signature_meaning = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["assignment", "number"]
        constraints = [
            models.UniqueConstraint(fields=["reader", "case", "phase"], name="one_read_per_reader_case_phase"),
            models.UniqueConstraint(fields=["assignment", "number"], name="unique_reader_case_number"),
            models.CheckConstraint(
                condition=~models.Q(status="signed")
                | (models.Q(signed_at__isnull=False) & ~models.Q(signature_name="")),
                name="signed_read_has_signature",
            ),
        ]

    def __str__(self) -> str:
        return f"case {self.number} ({self.phase})"

    @property
    def is_signed(self) -> bool:
        return self.status == ReadStatus.SIGNED


class MarkKind(models.TextChoices):
    MICROANEURYSM = "microaneurysm", "Microaneurysm"
    HAEMORRHAGE = "haemorrhage", "Haemorrhage"
    HARD_EXUDATE = "hard_exudate", "Hard exudate"
    COTTON_WOOL_SPOT = "cotton_wool_spot", "Cotton-wool spot"
    NEOVASCULARISATION = "neovascularisation", "Neovascularisation"


class MarkShape(models.TextChoices):
    POINT = "point", "Point"
    BOX = "box", "Box"


class LesionMark(BaseModel):
    """A lesion marked on a fundus image, in the image's pixel coordinates. Editable until the read is signed."""

    read = models.ForeignKey(Read, on_delete=models.CASCADE, related_name="marks")
    case_file = models.ForeignKey(CaseFile, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=MarkKind.choices)
    shape = models.CharField(max_length=5, choices=MarkShape.choices)
    x = models.FloatField(validators=[MinValueValidator(0.0)])
    y = models.FloatField(validators=[MinValueValidator(0.0)])
    width = models.FloatField(default=0.0, validators=[MinValueValidator(0.0)])
    height = models.FloatField(default=0.0, validators=[MinValueValidator(0.0)])

    class Meta:
        ordering = ["read", "created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.shape} at ({self.x:.0f}, {self.y:.0f})"

    def clean(self) -> None:
        if self.shape == MarkShape.BOX and (self.width <= 0 or self.height <= 0):
            raise ValidationError("A box needs a width and a height.")
        if self.shape == MarkShape.POINT and (self.width or self.height):
            raise ValidationError("A point has no width or height.")
        if self.case_file_id and self.read_id and self.case_file.case_id != self.read.case_id:
            raise ValidationError({"case_file": "Mark an image of the case being read."})
        if self.case_file_id and self.case_file.modality != "fundus":
            raise ValidationError({"case_file": "Lesions are marked on fundus photographs only."})
        w, h = self.case_file.width if self.case_file_id else None, self.case_file.height if self.case_file_id else None
        if w and h and (self.x + self.width > w or self.y + self.height > h):
            raise ValidationError(f"The mark lies outside the image ({w} x {h} pixels).")


class AdjudicationStatus(models.TextChoices):
    OPEN = "open", "Open"
    SIGNED = "signed", "Signed"


class Adjudication(BaseModel):
    """A discordant case's adjudication: the panel member's answers become its reference standard."""

    case = models.OneToOneField(Case, on_delete=models.PROTECT, related_name="adjudication")
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="adjudications")
    discordance = models.JSONField(default=list, help_text="Why the case was sent to adjudication.")
    status = models.CharField(max_length=8, choices=AdjudicationStatus.choices, default=AdjudicationStatus.OPEN)
    version = models.PositiveIntegerField(default=1)
    answers = models.JSONField(default=dict, blank=True)
    adjudicator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    signed_at = models.DateTimeField(null=True, blank=True)
    signature_name = models.CharField(max_length=200, blank=True)
    signature_meaning = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["trial", "created_at"]

    def __str__(self) -> str:
        return f"adjudication {self.case_id}"
