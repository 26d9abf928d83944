"""Storing uploaded case files: the pipeline, then storage, then the database row and its audit event.

Nothing partial is left behind: objects written to storage are deleted again if the database step fails (its
commit included), and a refused file writes nothing at all. What that cannot cover (the process dies between the
write and the commit, an enclosing transaction rolls back after the upload returned, the delete itself fails)
``orphan_objects_sweep`` removes later: objects under ``cases/`` that no row refers to.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from platform_core.accounts.models import User
from platform_core.audit.services import audit_record, audit_snapshot, audited_save
from platform_core.errors import ApplicationError
from platform_core.storage import delete_quietly, save_private, stored_objects, unlistable_reason
from trials.models import Case, CaseFile, CaseStatus, FileStatus, Trial, TrialStatus, VisualFieldResult
from trials.services import require_site_writer
from trials.states import require_allowed
from trials.uploads.errors import UploadRejected
from trials.uploads.pipeline import ProcessedUpload, UploadContext, process_upload
from trials.uploads.spool import sha256_of
from trials.uploads.visual_field import ReliabilityCriteria

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadOutcome:
    outcome: str  # "accepted" | "duplicate"
    case_file: CaseFile


# Reasons are free text that lands in the record and the audit trail: bounded, like every reason field (500).
MAX_REASON_CHARS = 500


def upload_context(case: Case, *, fundus_exception_reason: str = "") -> UploadContext:
    subject = case.subject
    trial = subject.trial
    # Age at the visit: the enrolment age plus the visit day (the normal values are age-corrected).
    age = 90.0 if subject.age == "90+" else min(90.0, float(subject.age) + case.visit_day / 365.25)
    return UploadContext(
        uid_key=bytes.fromhex(trial.deid_key),
        subject_pseudonym=subject.pseudonym,
        protocol_id=trial.protocol_number,
        protocol_name=trial.title[:64],
        site_id=subject.site.hospital.code,
        visit_day=case.visit_day,
        eye=case.laterality,
        trial_modalities=tuple(trial.modalities),
        subject_age_years=age,
        reliability=trial_reliability_criteria(trial),
        max_bytes=settings.VISUS_MAX_UPLOAD_MB * 1024 * 1024,
        max_pixels=settings.VISUS_MAX_IMAGE_PIXELS,
        min_side=settings.VISUS_MIN_IMAGE_SIDE,
        fundus_exception_reason=fundus_exception_reason.strip(),
        spool_dir=settings.FILE_UPLOAD_TEMP_DIR,
    )


def trial_reliability_criteria(trial: Trial) -> ReliabilityCriteria:
    return ReliabilityCriteria(
        name=f"trial {trial.protocol_number}",
        fixation_losses_max=float(trial.vf_max_fixation_losses),
        false_positives_max=float(trial.vf_max_false_positives),
        false_negatives_max=float(trial.vf_max_false_negatives),
    )


def check_can_upload(*, actor: User | None, case: Case) -> None:
    """Refuse uploads that no file could fix: wrong person, closed trial, closed case, withdrawn subject."""
    subject = case.subject
    require_site_writer(actor, subject, doing="upload files to its cases")
    if subject.trial.status == TrialStatus.CLOSED:
        raise ApplicationError("The trial is closed: no more files.", code="trial_closed")
    if subject.is_withdrawn:
        raise ApplicationError(f"{subject.pseudonym} is withdrawn: no more files.", code="subject_withdrawn")
    require_allowed("case_file.upload", subject.trial, subject)
    if case.status != CaseStatus.OPEN:
        raise ApplicationError(
            f"The case is {case.get_status_display().lower()}; reopen it before adding files.", code="case_not_open"
        )


def _nan_to_none(values: Iterable[float | None]) -> list[float | None]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values]


def case_file_upload(
    *, actor: User | None, case: Case, data: bytes | IO[bytes], source: str = "page", fundus_exception_reason: str = ""
) -> UploadOutcome:
    """De-identify and store one file for a case: ``data`` is the file's bytes or a seekable binary file (an upload
    spooled to disk), which a DICOM object is streamed from: hashed, de-identified and stored a chunk or a frame at a
    time, so the request's memory does not grow with the file (``tests/benchmarks/bench_upload_memory.py``).

    Raises UploadRejected (the file) or ApplicationError (the case) with a clear message; in both cases
    nothing is stored. The same de-identified content twice in a case is a duplicate, not an error.
    A photograph that does not look like a fundus photograph is refused (``not_fundus``) unless
    ``fundus_exception_reason`` says why it is one; it is then stored with an extra ``case_file.gate_exception``
    event that records the reason.
    """
    case = Case.objects.select_related("subject__trial", "subject__site__hospital").get(pk=case.pk)
    check_can_upload(actor=actor, case=case)
    if len(fundus_exception_reason.strip()) > MAX_REASON_CHARS:
        raise ValidationError(
            {"fundus_exception_reason": f"Keep the reason under {MAX_REASON_CHARS} characters; nothing was stored."}
        )
    processed = process_upload(data, upload_context(case, fundus_exception_reason=fundus_exception_reason))
    try:
        return _store_upload(
            actor=actor,
            case=case,
            processed=processed,
            source=source,
            fundus_exception_reason=fundus_exception_reason,
        )
    finally:
        processed.content_file.close()  # a spooled temporary file is freed at once


def _store_upload(
    *, actor: User | None, case: Case, processed: ProcessedUpload, source: str, fundus_exception_reason: str
) -> UploadOutcome:
    digest = sha256_of(processed.content_file)
    existing = CaseFile.objects.filter(case=case, sha256=digest).first()
    if existing is not None:
        return UploadOutcome("duplicate", existing)

    prefix = f"cases/{case.pk}"
    written: list[str] = []
    try:
        names = _store(prefix, processed, written)
        with transaction.atomic():
            case_file = _create_rows(
                actor=actor,
                case=case,
                processed=processed,
                digest=digest,
                names=names,
                source=source,
                fundus_exception_reason=fundus_exception_reason,
            )
    except (IntegrityError, ValidationError):
        delete_quietly(written)
        # The same file arrived twice at once: the other upload's row committed after our check, and our insert
        # met the unique (case, sha256) constraint (full_clean's check or the database's). A duplicate, not a 400.
        existing = CaseFile.objects.filter(case=case, sha256=digest).first()
        if existing is not None:
            return UploadOutcome("duplicate", existing)
        raise
    except BaseException:
        delete_quietly(written)
        raise
    return UploadOutcome("accepted", case_file)


def _store(prefix: str, processed: ProcessedUpload, written: list[str]) -> dict[str, str]:
    names = {"content": "", "preview": "", "thumbnail": "", "pd_plot": ""}
    names["content"] = save_private(prefix, processed.content_file, processed.extension)
    written.append(names["content"])
    if processed.pd_plot is not None:
        names["pd_plot"] = save_private(prefix, processed.pd_plot, "png")
        written.append(names["pd_plot"])
        names["preview"] = names["thumbnail"] = names["pd_plot"]
    else:
        if processed.preview is not None:
            names["preview"] = save_private(prefix, processed.preview, "jpg")
            written.append(names["preview"])
        if processed.thumbnail is not None:
            names["thumbnail"] = save_private(prefix, processed.thumbnail, "jpg")
            written.append(names["thumbnail"])
    return names


def _create_rows(
    *,
    actor: User | None,
    case: Case,
    processed: ProcessedUpload,
    digest: str,
    names: dict[str, str],
    source: str,
    fundus_exception_reason: str = "",
) -> CaseFile:
    case_file = CaseFile(
        case=case,
        modality=processed.modality,
        file_format=processed.file_format,
        sop_class=processed.sop_class,
        content=names["content"],
        preview=names["preview"],
        thumbnail=names["thumbnail"],
        content_type=processed.content_type,
        sha256=digest,
        size=processed.size,
        width=processed.width,
        height=processed.height,
        frames=processed.frames,
        bits=processed.bits,
        deid_report=processed.report,
        uploaded_by=actor,
    )
    check, gradability = processed.fundus_check, processed.gradability
    if check is not None:
        case_file.fundus_check = check.as_dict()
        if not check.plausible:
            case_file.gate_exception_reason = fundus_exception_reason.strip()
    if gradability is not None:
        case_file.gradable = gradability.gradable
        case_file.quality = gradability.as_dict()
    audited_save(
        case_file,
        actor=actor,
        action="case_file.upload",
        force_insert=True,
        trial_ref=case.subject.trial.slug,
        hospital_code=case.subject.site.hospital.code,
        reason=f"uploaded via {source}",
    )
    if case_file.gate_exception_reason:
        audit_record(
            actor=actor,
            action="case_file.gate_exception",
            obj=case_file,
            changes={"fundus_check": [None, "; ".join(check.reasons) if check is not None else ""]},
            reason=case_file.gate_exception_reason,
            trial_ref=case.subject.trial.slug,
            hospital_code=case.subject.site.hospital.code,
        )
    if processed.analysis is not None and processed.visual_field is not None:
        vf, analysis = processed.visual_field, processed.analysis
        result = VisualFieldResult(
            case_file=case_file,
            case=case,
            eye=vf.eye,
            sensitivities=_nan_to_none(vf.sensitivities),
            total_deviation=_nan_to_none(analysis.total_deviation),
            pattern_deviation=_nan_to_none(analysis.pattern_deviation),
            total_deviation_probability=_nan_to_none(analysis.total_deviation_probability),
            pattern_deviation_probability=_nan_to_none(analysis.pattern_deviation_probability),
            mean_deviation=analysis.mean_deviation,
            pattern_standard_deviation=analysis.pattern_standard_deviation,
            visual_field_index=analysis.visual_field_index,
            glaucoma_hemifield_test=analysis.glaucoma_hemifield_test,
            indices_source=dict(analysis.indices_source),
            fixation_loss_percent=vf.fixation_loss_percent,
            false_positive_percent=vf.false_positive_percent,
            false_negative_percent=vf.false_negative_percent,
            reliable=analysis.reliability.reliable,
            reliability_rule=analysis.reliability.criteria.name[:60],
            reliability_reasons=list(analysis.reliability.fired),
            reliability_criteria=analysis.reliability.criteria.as_dict(),
            pd_plot=names["pd_plot"],
        )
        result.full_clean()
        result.save(force_insert=True)
    return case_file


CASE_OBJECTS_PREFIX = "cases"
# The sweep deletes at most this many orphans without question, and more only while they are under this share of
# the objects it looked at.
ORPHAN_SWEEP_FREE_COUNT = 20
ORPHAN_SWEEP_MAX_SHARE = 0.1


def orphan_objects_sweep(*, older_than: timedelta | None = None) -> list[str]:
    """Delete the objects under ``cases/`` that no case file or visual-field row refers to and that were written
    more than ``older_than`` ago (default ``VISUS_ORPHAN_GRACE_SECONDS``: an upload in progress writes its objects
    before its rows commit). Returns the names deleted. Run daily by Celery beat (``CELERY_BEAT_SCHEDULE``).

    The rows are read after the listing, so a row committed meanwhile keeps its objects. A storage that cannot be
    listed (``platform_core.storage.unlistable_reason``) is not swept: a warning in the log says so.
    """
    if older_than is None:
        older_than = timedelta(seconds=settings.VISUS_ORPHAN_GRACE_SECONDS)
    unlistable = unlistable_reason()
    if unlistable:
        logger.warning(
            "Orphan sweep did nothing: %s, so no object under %s/ is known to lack a row. Nothing was deleted.",
            unlistable,
            CASE_OBJECTS_PREFIX,
        )
        return []
    cutoff = timezone.now() - older_than
    candidates = [name for name, written in stored_objects(CASE_OBJECTS_PREFIX) if written <= cutoff]
    if not candidates:
        return []
    referenced: set[str] = set()
    for names in CaseFile.objects.values_list("content", "preview", "thumbnail"):
        referenced.update(names)
    referenced.update(VisualFieldResult.objects.values_list("pd_plot", flat=True))
    orphans = [name for name in candidates if name not in referenced]
    if len(orphans) > ORPHAN_SWEEP_FREE_COUNT and len(orphans) > ORPHAN_SWEEP_MAX_SHARE * len(candidates):
        # Failed uploads leave a few objects; most of the bucket without rows means this database is not the
        # bucket's (a restored backup, a staging copy): deleting would destroy originals. Nothing is deleted.
        logger.error(
            "Orphan sweep refused: %d of %d objects under %s/ have no row; is this database the bucket's? "
            "Nothing was deleted.",
            len(orphans),
            len(candidates),
            CASE_OBJECTS_PREFIX,
        )
        return []
    if orphans:
        delete_quietly(orphans)
        logger.warning(
            "Deleted %d orphaned object(s) under %s/ (stored by uploads whose rows never committed)",
            len(orphans),
            CASE_OBJECTS_PREFIX,
        )
    return orphans


def _retire(
    *, actor: User, case_file: CaseFile, status: str, reason: str, replacement: CaseFile | None, action: str
) -> CaseFile:
    case_file = (
        CaseFile.objects.select_for_update(no_key=True, of=("self",))
        .select_related("case__subject__trial", "case__subject__site__hospital")
        .get(pk=case_file.pk)
    )
    case = case_file.case
    subject = case.subject
    require_site_writer(actor, subject, doing="change the files of its cases")
    require_allowed("case_file.retire", subject.trial, subject)
    if case_file.status != FileStatus.ACCEPTED:
        raise ApplicationError(
            f"This file is already {case_file.get_status_display().lower()}.", code="file_not_active", status=409
        )
    if case.status != CaseStatus.OPEN:
        raise ApplicationError(
            f"The case is {case.get_status_display().lower()}; reopen it before changing its files.",
            code="case_not_open",
        )
    if not reason.strip():
        raise ValidationError({"reason": "Give the reason."})
    before = audit_snapshot(case_file)
    case_file.status = status
    case_file.status_reason = reason.strip()
    case_file.status_changed_at = timezone.now()
    case_file.superseded_by = replacement
    audited_save(
        case_file,
        actor=actor,
        action=action,
        before=before,
        update_fields=["status", "status_reason", "status_changed_at", "superseded_by", "updated_at"],
        trial_ref=subject.trial.slug,
        hospital_code=subject.site.hospital.code,
        reason=reason.strip(),
    )
    return case_file


@transaction.atomic
def case_file_withdraw(*, actor: User, case_file: CaseFile, reason: str) -> CaseFile:
    """Withdraw a file (a wrong upload): kept in the record, ignored by readers, models and exports."""
    return _retire(
        actor=actor,
        case_file=case_file,
        status=FileStatus.WITHDRAWN,
        reason=reason,
        replacement=None,
        action="case_file.withdraw",
    )


@transaction.atomic
def case_file_supersede(*, actor: User, case_file: CaseFile, replacement: CaseFile, reason: str) -> CaseFile:
    """Mark a file as replaced by a newer upload of the same case and modality (which must be active)."""
    replacement = CaseFile.objects.select_for_update(no_key=True).get(pk=replacement.pk)
    if replacement.pk == case_file.pk:
        raise ValidationError({"replacement": "A file cannot replace itself."})
    if replacement.case_id != case_file.case_id or replacement.status != FileStatus.ACCEPTED:
        raise ValidationError({"replacement": "Choose an active file of the same case as the replacement."})
    if replacement.modality != case_file.modality:
        raise ValidationError(
            {"replacement": f"The replacement must be a {case_file.get_modality_display().lower()} too."}
        )
    return _retire(
        actor=actor,
        case_file=case_file,
        status=FileStatus.SUPERSEDED,
        reason=reason,
        replacement=replacement,
        action="case_file.supersede",
    )


__all__ = [
    "UploadOutcome",
    "UploadRejected",
    "case_file_supersede",
    "case_file_upload",
    "case_file_withdraw",
    "check_can_upload",
    "orphan_objects_sweep",
    "upload_context",
]
