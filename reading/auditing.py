"""Audit actions of blind reading, and the fields their events record (never a password: signing records
the printed name, time and meaning only)."""

from platform_core.audit.vocabulary import register_actions, register_auditable_fields

register_actions(
    "reading",
    {
        "reading.setup_set": "a trial's reading design was set or changed (crossing, phases, washout)",
        "reading.reader_assign": "a reader was assigned to a phase with an experience group",
        "reading.reader_unassign": "a reader's assignment ended, with a reason",
        "reading.panel_add": "a reader joined a trial's adjudication panel",
        "reading.calibration_mark": "a case was marked as a hidden calibration case with a known answer",
        "read.open": "a case was served to a reader (draft read with the reader's case number)",
        "read.draft_save": "a reader saved a draft read (answers, confidences, time on case)",
        "read.mark_add": "a reader marked a lesion on an image",
        "read.mark_change": "a reader changed a lesion mark",
        "read.mark_delete": "a reader deleted a lesion mark",
        "read.sign": "a reader signed and locked a read (printed name, time, meaning)",
        "read.amend": "a reader amended a signed read, with a reason, and signed it again",
        "read.reset": "a manager discarded a reader's unsigned read, with a reason",
        "adjudication.open": "discordant reads sent a case to adjudication",
        "adjudication.sign": "a panel member signed a case's reference standard (unblinded by design)",
        "reference.lock": "a manager locked a trial's reference standard (signed)",
    },
)

register_auditable_fields(
    "reading.ReadingSetup",
    [
        "crossing",
        "readers_per_case",
        "aided_phase",
        "washout_days",
        "extra_groups",
        "grade_gap",
        "reference_locked_at",
        "stale_after_days",
    ],
)
register_auditable_fields("reading.ReaderAssignment", ["reader.email", "phase", "group", "is_active"])
register_auditable_fields("reading.PanelMember", ["user.email", "is_active"])
register_auditable_fields("reading.CalibrationCase", ["case", "known_answers"])
register_auditable_fields(
    "reading.Read",
    [
        "case",
        "phase",
        "number",
        "status",
        "answers",
        "confidences",
        "seconds_on_case",
        "signed_at",
        "signature_name",
        "signature_meaning",
    ],
)
register_auditable_fields("reading.LesionMark", ["case_file", "kind", "shape", "x", "y", "width", "height"])
register_auditable_fields(
    "reading.Adjudication",
    ["status", "answers", "adjudicator.email", "signed_at", "signature_name", "signature_meaning"],
)
