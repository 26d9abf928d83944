"""The audit trail's own actions (see vocabulary.py for how every app declares its own)."""

from platform_core.audit.vocabulary import register_actions

register_actions(
    "audit",
    {
        "audit_event.redact": "an operator replaced an event's payload by a redaction marker (the digest stays)",
        "audit_trail.export": "a reviewer downloaded the audit trail as CSV (the filters and the number of events)",
        "audit_trail.rehash": "the chain was brought across to a new hashing scheme by a migration",
    },
)
