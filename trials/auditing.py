"""Audit actions of trials, sites, subjects and cases, and the fields their events record."""

from platform_core.audit.vocabulary import register_actions, register_auditable_fields
from trials.services import TRIAL_FIELDS

register_actions(
    "trials",
    {
        "trial.create": "a trial was created (draft)",
        "trial.update": "a trial's protocol or settings changed",
        "trial.transition": "a trial changed status (recruiting, on hold, closed...)",
        "trial_site.create": "a hospital became a site of a trial",
        "trial_site.update": "a site's enrolment target or status changed, with a reason",
        "subject.enroll": "a subject was enrolled and given a pseudonym",
        "subject.withdraw": "a subject was withdrawn, with a reason",
        "case.create": "a case (eye, visit) was opened",
        "case.status": "a case was completed, excluded or reopened",
        "case.rnfl": "a case's OCT RNFL thickness was recorded or changed",
        "case_file.upload": "a de-identified file was stored on a case",
        "case_file.gate_exception": "a photograph that failed the fundus check was stored anyway, with a reason",
        "case_file.withdraw": "a case file was withdrawn, with a reason (readers and models ignore it)",
        "case_file.supersede": "a case file was replaced by a newer upload, with a reason",
        "reference.record": "a case's reference standard was recorded",
        "reference.amend": "a case's reference standard was amended, with a reason",
        # Recorded by trials/vf_services.py (on main since the vfield branch): new cut-offs re-judge stored fields.
        "visual_field.rejudge": "a stored visual field's reliability verdict changed under new cut-offs",
        "trial.visual_fields_rejudge": "a trial's stored visual fields were re-judged under new cut-offs",
    },
)

# Trial.deid_key is the trial's de-identification secret: never auditable.
register_auditable_fields("trials.Trial", [*TRIAL_FIELDS, "status"])
register_auditable_fields("trials.TrialSite", ["hospital.code", "enrolment_target", "status"])
register_auditable_fields(
    "trials.Subject",
    [
        "pseudonym",
        "consent_days_before_enrolment",
        "consent_form_version",
        "eligibility",
        "sex",
        "age",
        "diabetes_type",
        "diabetes_duration_years",
        "status",
        "withdrawn_at",
        "withdrawal_reason",
    ],
)
register_auditable_fields(
    "trials.Case",
    ["subject.pseudonym", "laterality", "visit_day", "status", "exclusion_reason", "oct_rnfl_thickness_um"],
)
register_auditable_fields(
    "trials.CaseFile",
    [
        "case",
        "modality",
        "file_format",
        "sha256",
        "size",
        "status",
        "status_reason",
        "superseded_by",
        "gradable",
        "gate_exception_reason",
    ],
)
register_auditable_fields("trials.ReferenceStandard", ["icdr_grade", "glaucoma", "source"])

# Data queries (monitoring, issue 10 item 7): each step records the query's status and its note.
register_actions(
    "trials",
    {
        "data_query.raise": "a monitor raised a data query on a case or one of its files",
        "data_query.answer": "the site's coordinator answered a data query",
        "data_query.close": "a monitor closed a data query",
        "data_query.reopen": "a monitor reopened a data query, with a reason",
    },
)
# The case and file by the names the pages give them (not their keys): "DR01-H01-0001 OD day 0", the file's SHA-256.
register_auditable_fields("trials.DataQuery", ["case.full_label", "case_file.sha256", "status", "text"])
