"""Trials, their sites, enrolled subjects and cases (a subject's eye at a visit)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from platform_core import limits
from platform_core.accounts.models import Hospital
from platform_core.models import BaseModel
from trials.reading_form import CATALOGUE, unknown_questions


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
    if len(value) > limits.LIST_ITEMS:
        raise ValidationError(f"{len(value):,} modalities given; at most {limits.LIST_ITEMS} are allowed.")
    bad = [v for v in value if v not in Modality.values]
    if bad:
        raise ValidationError(f"Unknown modality: {', '.join(map(str, bad))}.")


def validate_reading_form(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one question for the reading form.")
    if len(value) > limits.LIST_ITEMS:
        raise ValidationError(f"{len(value):,} questions given; at most {limits.LIST_ITEMS} are allowed.")
    bad = unknown_questions([str(v) for v in value])
    if bad:
        raise ValidationError(f"Unknown question: {', '.join(bad)}.")


def validate_criteria(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValidationError("Criteria must be a list of non-empty statements.")
    problem = limits.list_problem(
        value, items=limits.CRITERIA, item_length=limits.CRITERION, plural="criteria", singular="Criterion"
    )
    if problem:
        raise ValidationError(problem)


def new_deid_key() -> str:
    return secrets.token_hex(32)


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
    # Li et al. 2018: a visual field is reliable when fixation losses are under 2/13 of the checks and false
    # positives and false negatives under 15%. Changing them after recruiting re-judges the stored fields.
    vf_max_fixation_losses = models.FloatField(
        default=round(200 / 13, 4),
        validators=[MinValueValidator(0.0), MaxValueValidator(100)],
        help_text="Percent of fixation checks; at or above it a visual field is unreliable (Li et al.: 2/13).",
    )
    vf_max_false_positives = models.FloatField(
        default=15.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100)],
        help_text="Percent; at or above it a visual field is unreliable.",
    )
    vf_max_false_negatives = models.FloatField(
        default=15.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100)],
        help_text="Percent; at or above it a visual field is unreliable.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Key of the HMAC that replaces DICOM UIDs consistently within this trial. Never shown or exported.
    deid_key = models.CharField(max_length=64, default=new_deid_key, editable=False)

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

    @property
    def modality_labels(self) -> list[str]:
        """The modalities as pages name them ("Visual field", not visual_field)."""
        return [Modality(m).label if m in Modality.values else m for m in self.modalities]

    @property
    def reading_form_labels(self) -> list[str]:
        """The reading form's questions by their labels ("ICDR diabetic retinopathy grade", not icdr_grade)."""
        return [CATALOGUE[q].label if q in CATALOGUE else q for q in self.reading_form]


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
    # Not the date itself: a calendar date is an identifier under HIPAA Safe Harbor, and every trial-wide role
    # sees the subject. The coordinator types the date; Visus keeps how many days before enrolment it was.
    consent_days_before_enrolment = models.PositiveIntegerField(
        help_text="Days from consent to enrolment (0: the same day); the date itself is not stored."
    )
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
    # One-time token of the enrolment form (or API Idempotency-Key): a double submit at the site finds it.
    # Unique per site, not globally: another site's key must neither block an enrolment nor name its subject.
    submission_token = models.CharField(max_length=64, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["trial", "pseudonym"]
        indexes = [
            # A site's subjects in pseudonym order: the case list of a coordinator (trials.selectors.CasesByTrial).
            # Pseudonyms start with the site's code, so in the trial's pseudonym order a site is one block, and a
            # coordinator of a late site would otherwise walk past every other site's subjects first.
            models.Index(fields=["trial", "site", "pseudonym"], name="subject_trial_site_pseudonym"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["trial", "pseudonym"], name="unique_subject_pseudonym"),
            models.UniqueConstraint(fields=["site", "number"], name="unique_subject_number_per_site"),
            models.UniqueConstraint(fields=["site", "submission_token"], name="unique_submission_per_site"),
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


RNFL_RANGE_UM = (20.0, 200.0)  # plausible average RNFL thickness; outside it a value is a typo or a failed scan


class Case(BaseModel):
    """A subject's eye at a visit. Visits are days since enrolment: no calendar dates."""

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="cases")
    # The subject's trial and site, copied when the case is created (``case_create``); neither changes after
    # enrolment (no service moves a subject). Who may see a case is decided on these two columns, and the index
    # on them makes the case list's count an index-only scan instead of a join of every case with its subject.
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="+", editable=False, db_index=False)
    site = models.ForeignKey(TrialSite, on_delete=models.PROTECT, related_name="+", editable=False, db_index=False)
    laterality = models.CharField(max_length=2, choices=Laterality.choices)
    visit_day = models.PositiveIntegerField(validators=[MaxValueValidator(36500)])
    status = models.CharField(max_length=10, choices=CaseStatus.choices, default=CaseStatus.OPEN)
    exclusion_reason = models.TextField(blank=True)
    oct_rnfl_thickness_um = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(RNFL_RANGE_UM[0]), MaxValueValidator(RNFL_RANGE_UM[1])],
        help_text="Average peripapillary RNFL thickness (um) as the OCT device reports it, for trials with OCT.",
    )

    class Meta:
        ordering = ["subject", "visit_day", "laterality"]
        indexes = [models.Index(fields=["trial", "site"], name="case_trial_site")]
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

    @property
    def full_label(self) -> str:
        """The case as pages and the audit trail name it: "DR01-H01-0001 OD day 0"."""
        return f"{self.subject.pseudonym} {self.label}"


class FileStatus(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    SUPERSEDED = "superseded", "Superseded"
    WITHDRAWN = "withdrawn", "Withdrawn"


FILE_FORMAT_LABELS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "tiff": "TIFF",
    "dicom": "DICOM",
    "visual_field_csv": "Visual-field CSV",
}


class CaseFile(BaseModel):
    """A de-identified file of a case. Names in storage are random; the original name is never kept
    (file names often carry the patient's name)."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="files")
    modality = models.CharField(max_length=12, choices=Modality.choices)
    file_format = models.CharField(max_length=20, help_text="jpeg, png, tiff, dicom or visual_field_csv")
    sop_class = models.CharField(max_length=80, blank=True, help_text="DICOM SOP class name, if DICOM.")
    content = models.FileField(max_length=200)
    preview = models.FileField(max_length=200, blank=True)
    thumbnail = models.FileField(max_length=200, blank=True)
    content_type = models.CharField(max_length=60)
    sha256 = models.CharField(max_length=64, help_text="Of the stored, de-identified bytes.")
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    frames = models.PositiveIntegerField(default=1)
    bits = models.PositiveSmallIntegerField(null=True, blank=True)
    deid_report = models.JSONField(default=dict, help_text="What was removed or replaced; never the values.")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty for files brought in by the import_cases command.",
    )
    status = models.CharField(max_length=12, choices=FileStatus.choices, default=FileStatus.ACCEPTED)
    # Superseded (replaced by a newer upload) or withdrawn: the reason, when and the replacement. Readers and models
    # read only accepted files (trials.selectors.active_case_files).
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )
    # The upload gate (trials.uploads.fundus_gate), for photographs: the plausibility check, the coordinator's
    # reason when a photograph that failed it was stored anyway, and gradability (focus, exposure, field).
    fundus_check = models.JSONField(default=dict, blank=True)
    gate_exception_reason = models.TextField(blank=True)
    gradable = models.BooleanField(null=True, blank=True, help_text="Empty for files that are not photographs.")
    quality = models.JSONField(default=dict, blank=True, help_text="Gradability measures and the reasons.")

    class Meta:
        ordering = ["case", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["case", "sha256"], name="unique_file_content_per_case"),
            models.CheckConstraint(
                condition=models.Q(status="accepted") | ~models.Q(status_reason=""),
                name="retired_file_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_modality_display()} {self.sha256[:12]}"

    @property
    def is_image(self) -> bool:
        return bool(self.preview)

    @property
    def format_label(self) -> str:
        """The stored format as a person names it ("Visual-field CSV", not visual_field_csv)."""
        return FILE_FORMAT_LABELS.get(self.file_format, self.file_format.upper())

    def is_active(self) -> bool:
        return self.status == FileStatus.ACCEPTED


class VisualFieldResult(BaseModel):
    """Structured 24-2 data parsed from a visual-field upload, with its reliability verdict."""

    case_file = models.OneToOneField(CaseFile, on_delete=models.PROTECT, related_name="visual_field")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="visual_fields")
    eye = models.CharField(max_length=2, choices=Laterality.choices)
    sensitivities = models.JSONField(help_text="54 values, right-eye orientation, null at the blind spot.")
    total_deviation = models.JSONField()
    pattern_deviation = models.JSONField()
    total_deviation_probability = models.JSONField()
    pattern_deviation_probability = models.JSONField()
    mean_deviation = models.FloatField()
    pattern_standard_deviation = models.FloatField()
    visual_field_index = models.FloatField()
    glaucoma_hemifield_test = models.CharField(
        max_length=60, blank=True, help_text="The perimeter's GHT when it gave one, otherwise computed."
    )
    indices_source = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"md" | "psd" | "vfi" | "ght" | "td" | "pd" | "tdp" | "pdp": "perimeter" | "computed"}',
    )
    fixation_loss_percent = models.FloatField(null=True, blank=True)
    false_positive_percent = models.FloatField(null=True, blank=True)
    false_negative_percent = models.FloatField(null=True, blank=True)
    reliable = models.BooleanField()
    reliability_rule = models.CharField(max_length=60)
    reliability_reasons = models.JSONField(default=list, blank=True)
    reliability_criteria = models.JSONField(
        default=dict, blank=True, help_text="The cut-offs (percent) the verdict was made with."
    )
    pd_plot = models.FileField(max_length=200, help_text="Pattern Deviation probability plot (network input).")

    class Meta:
        ordering = ["case", "created_at"]

    def __str__(self) -> str:
        return f"VF {self.eye} MD {self.mean_deviation:.2f}"


class ReferenceSource(models.TextChoices):
    IMPORTED = "imported", "Imported"
    ADJUDICATION = "adjudication", "Adjudication panel"
    MAJORITY = "majority", "Majority of readers"


class ReferenceStandard(BaseModel):
    """The truth a case is scored against (one per case). Changes are amendments with a reason."""

    case = models.OneToOneField(Case, on_delete=models.PROTECT, related_name="reference")
    icdr_grade = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(4)])
    glaucoma = models.CharField(
        max_length=8, blank=True, choices=[("yes", "Yes"), ("no", "No"), ("suspect", "Suspect")]
    )
    source = models.CharField(max_length=14, choices=ReferenceSource.choices)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["case"]

    def __str__(self) -> str:
        return f"reference of {self.case_id}"

    @property
    def referable(self) -> bool | None:
        return None if self.icdr_grade is None else self.icdr_grade >= 2


class DataQueryStatus(models.TextChoices):
    OPEN = "open", "Open"
    ANSWERED = "answered", "Answered"
    CLOSED = "closed", "Closed"


class DataQueryNoteKind(models.TextChoices):
    RAISE = "raise", "Raised"
    ANSWER = "answer", "Answered"
    CLOSE = "close", "Closed"
    REOPEN = "reopen", "Reopened"


class DataQuery(BaseModel):
    """A monitor's question about a case or one of its files (source data verification). The site's coordinator
    answers, the monitor closes it or reopens it; each step is a note, and an audit event."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="data_queries")
    case_file = models.ForeignKey(
        CaseFile, null=True, blank=True, on_delete=models.PROTECT, related_name="data_queries"
    )
    status = models.CharField(max_length=10, choices=DataQueryStatus.choices, default=DataQueryStatus.OPEN)
    raised_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField(help_text="The question, as the monitor raised it.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "data queries"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=DataQueryStatus.values), name="data_query_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"query on {self.case_id}"

    def clean(self) -> None:
        if self.case_file_id and self.case_file and self.case_file.case_id != self.case_id:
            raise ValidationError({"case_file": "The file belongs to another case."})


class DataQueryNote(BaseModel):
    query = models.ForeignKey(DataQuery, on_delete=models.PROTECT, related_name="notes")
    kind = models.CharField(max_length=8, choices=DataQueryNoteKind.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.kind} note on {self.query_id}"
