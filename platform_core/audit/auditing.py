"""The audit trail's own actions (see vocabulary.py for how every app declares its own)."""

from platform_core.audit.vocabulary import register_actions

register_actions(
    "audit",
    {
        "audit_event.redact": "an operator replaced an event's payload by a redaction marker (the digest stays)",
        "audit_trail.rehash": "the chain was brought across to a new hashing scheme by a migration",
    },
)

# Written by the generic AuditedAdminMixin (platform_core/audit/admin_mixins.py) from the model's name, until
# the admin calls the services (issue 8, item 3). When that lands, delete this block: the services' names
# (trial_site.update, membership.grant...) are the vocabulary.
ADMIN_LEGACY_ACTIONS = {
    "user.change": "a user was changed in the Django admin",
    "user.delete": "a user was deleted in the Django admin",
    "hospital.change": "a hospital was changed in the Django admin",
    "hospital.delete": "a hospital was deleted in the Django admin",
    "membership.create": "a membership was added in the Django admin",
    "membership.change": "a membership was changed in the Django admin",
    "membership.delete": "a membership was deleted in the Django admin",
    "trial.change": "a trial was changed in the Django admin",
    "trial.delete": "a trial was deleted in the Django admin",
    "trialsite.create": "a site was added in the Django admin",
    "trialsite.change": "a site was changed in the Django admin",
    "trialsite.delete": "a site was deleted in the Django admin",
}
register_actions("admin_legacy", ADMIN_LEGACY_ACTIONS)
