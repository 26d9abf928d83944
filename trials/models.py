"""Trials, their sites, enrolled subjects and cases (a subject's eye at a visit)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from platform_core.accounts.models import Hospital
from platform_core.models import BaseModel
from trials.reading_form import unknown_questions


class Modality(models.TextChoices):
    FUNDUS = "fundus", "Fundus photograph"
    VISUAL_FIELD = "visual_field", "Visual field"
    OCT = "oct", "OCT"


class TrialStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RECRUITING = "recruiting", "Recruiting"
    READING = "reading", "Reading"
    CLOSED = "closed", "Closed"


# Which status may follow which: set-up happens in draft, enrolment while recruiting, reads while
# reading; a closed trial is final.
TRIAL_TRANSITIONS: dict[str, frozenset[str]] = {
    TrialStatus.DRAFT: frozenset({TrialStatus.RECRUITING}),
    TrialStatus.RECRUITING: frozenset({TrialStatus.READING, TrialStatus.CLOSED}),
    TrialStatus.READING: frozenset({TrialStatus.CLOSED}),
    TrialStatus.CLOSED: frozenset(),
}


class ReadingDesign(models.TextChoices):
    UNAIDED = "unaided", "Unaided reads only"
    UNAIDED_THEN_AIDED = "unaided_then_aided", "Unaided, then AI-aided after a washout"


class ReferenceRule(models.TextChoices):
    ADJUDICATION = "adjudication", "Adjudication panel"
    MAJORITY = "majority", "Majority of readers"
    IMPORTED = "imported", "Imported"


def validate_modalities(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one modality.")
    bad = [v for v in value if v not in Modality.values]
    if bad:
        raise ValidationError(f"Unknown modality: {', '.join(map(str, bad))}.")


def validate_reading_form(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one question for the reading form.")
    bad = unknown_questions([str(v) for v in value])
    if bad:
        raise ValidationError(f"Unknown question: {', '.join(bad)}.")


def validate_criteria(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValidationError("Criteria must be a list of non-empty statements.")


RESERVED_SLUGS = {"create", "new", "add"}
slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{1,48}$", "Use 2-49 lower-case letters, digits and hyphens.")
prefix_validator = RegexValidator(r"^[A-Z0-9]{2,8}$", "Use 2-8 capital letters or digits, e.g. DR01.")


class Trial(BaseModel):
    slug = models.SlugField(max_length=49, unique=True, validators=[slug_validator])
    protocol_number = models.CharField(max_length=40, unique=True)
    title = models.CharField(max_length=300)
    subject_prefix = models.CharField(
        max_length=8, unique=True, validators=[prefix_validator], help_text="Starts every subject ID, e.g. DR01."
    )
    status = models.CharField(max_length=12, choices=TrialStatus.choices, default=TrialStatus.DRAFT)
    modalities = models.JSONField(default=list, validators=[validate_modalities])
    reading_form = models.JSONField(default=list, validators=[validate_reading_form])
    readers_per_case = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    reading_design = models.CharField(max_length=20, choices=ReadingDesign.choices, default=ReadingDesign.UNAIDED)
    washout_days = models.PositiveSmallIntegerField(default=0, help_text="Days between unaided and AI-aided reads.")
    reference_rule = models.CharField(max_length=14, choices=ReferenceRule.choices, default=ReferenceRule.ADJUDICATION)
    inclusion_criteria = models.JSONField(default=list, blank=True, validators=[validate_criteria])
    exclusion_criteria = models.JSONField(default=list, blank=True, validators=[validate_criteria])
    vf_max_fixation_losses = models.PositiveSmallIntegerField(
        default=20, validators=[MaxValueValidator(100)], help_text="Percent; above it a visual field is unreliable."
    )
    vf_max_false_positives = models.PositiveSmallIntegerField(default=15, validators=[MaxValueValidator(100)])
    vf_max_false_negatives = models.PositiveSmallIntegerField(default=33, validators=[MaxValueValidator(100)])
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["protocol_number"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=TrialStatus.values), name="trial_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.protocol_number} {self.title}"

    def clean(self) -> None:
        if self.slug in RESERVED_SLUGS:
            raise ValidationError({"slug": f"{self.slug!r} is reserved; choose another."})
        if self.reading_design == ReadingDesign.UNAIDED_THEN_AIDED and self.washout_days < 1:
            raise ValidationError({"washout_days": "An AI-aided phase needs a washout of at least one day."})

    @property
    def is_recruiting(self) -> bool:
        return self.status == TrialStatus.RECRUITING

    def can_transition_to(self, status: str) -> bool:
        return status in TRIAL_TRANSITIONS[self.status]


class SiteStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ON_HOLD = "on_hold", "On hold"
    CLOSED = "closed", "Closed"


class TrialSite(BaseModel):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="sites")
    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="trial_sites")
    enrolment_target = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=SiteStatus.choices, default=SiteStatus.ACTIVE)
    # The last subject number issued here; incremented under a row lock so IDs never repeat.
    last_subject_number = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["trial", "hospital__code"]
        constraints = [models.UniqueConstraint(fields=["trial", "hospital"], name="unique_trial_site")]

    def __str__(self) -> str:
        return f"{self.trial.protocol_number} at {self.hospital.code}"


class Sex(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNKNOWN = "unknown", "Not recorded"


class DiabetesType(models.TextChoices):
    NONE = "none", "No diabetes"
    TYPE_1 = "type1", "Type 1"
    TYPE_2 = "type2", "Type 2"
    OTHER = "other", "Other"
    UNKNOWN = "unknown", "Unknown"


class SubjectStatus(models.TextChoices):
    ENROLLED = "enrolled", "Enrolled"
    WITHDRAWN = "withdrawn", "Withdrawn"


age_validator = RegexValidator(r"^(90\+|[1-8]?[0-9])$", 'Age in whole years 0-89, or "90+".')


class Subject(BaseModel):
    """A pseudonymous trial subject. No identifiers: no name, no birth date, no hospital number."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="subjects")
    site = models.ForeignKey(TrialSite, on_delete=models.PROTECT, related_name="subjects")
    pseudonym = models.CharField(max_length=32, help_text="Issued by the server, e.g. DR01-H02-0042.")
    number = models.PositiveIntegerField()
    enrolled_at = models.DateTimeField()
    enrolled_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    consent_date = models.DateField()
    consent_form_version = models.CharField(max_length=40)
    eligibility = models.JSONField(default=dict, help_text="{criterion: answer} as recorded at enrolment.")
    sex = models.CharField(max_length=8, choices=Sex.choices)
    age = models.CharField(max_length=3, validators=[age_validator], help_text='Whole years; 90 and over is "90+".')
    diabetes_type = models.CharField(max_length=8, choices=DiabetesType.choices)
    diabetes_duration_years = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(100)]
    )
    status = models.CharField(max_length=10, choices=SubjectStatus.choices, default=SubjectStatus.ENROLLED)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawal_reason = models.TextField(blank=True)
    # One-time token of the enrolment form (or API Idempotency-Key): a double submit finds it.
    submission_token = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    class Meta:
        ordering = ["trial", "pseudonym"]
        constraints = [
            models.UniqueConstraint(fields=["trial", "pseudonym"], name="unique_subject_pseudonym"),
            models.UniqueConstraint(fields=["site", "number"], name="unique_subject_number_per_site"),
        ]

    def __str__(self) -> str:
        return self.pseudonym

    @property
    def is_withdrawn(self) -> bool:
        return self.status == SubjectStatus.WITHDRAWN


class Laterality(models.TextChoices):
    OD = "OD", "OD (right eye)"
    OS = "OS", "OS (left eye)"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    COMPLETE = "complete", "Complete"
    EXCLUDED = "excluded", "Excluded"


class Case(BaseModel):
    """A subject's eye at a visit. Visits are days since enrolment: no calendar dates."""

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="cases")
    laterality = models.CharField(max_length=2, choices=Laterality.choices)
    visit_day = models.PositiveIntegerField(validators=[MaxValueValidator(36500)])
    status = models.CharField(max_length=10, choices=CaseStatus.choices, default=CaseStatus.OPEN)
    exclusion_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["subject", "visit_day", "laterality"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "laterality", "visit_day"], name="unique_case_eye_visit"),
            models.CheckConstraint(
                condition=~models.Q(status="excluded") | ~models.Q(exclusion_reason=""),
                name="excluded_case_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject.pseudonym} {self.laterality} day {self.visit_day}"

    @property
    def label(self) -> str:
        return f"{self.laterality} day {self.visit_day}"
