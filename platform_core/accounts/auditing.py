"""Audit actions of accounts, hospitals and memberships, and the fields their events record.

Passwords, password hashes and token keys or digests are never auditable (vocabulary.py refuses them).
"""

from platform_core.audit.vocabulary import register_actions, register_auditable_fields

register_actions(
    "accounts",
    {
        "hospital.create": "a hospital was created (its code normalised)",
        "hospital.update": "a hospital's name or country was changed, with a reason",
        "group.create": "a staff permission group was created in the admin",
        "group.update": "a staff permission group's name or permissions were changed, with a reason",
        "user.create": "a user account was created (also by manage.py createsuperuser)",
        "user.update": "an account's name, access or groups were changed by an administrator, with a reason",
        "user.password_set": "an administrator set another person's password, with a reason (never the password)",
        "user.password_change": "a user changed their own password (never the password itself)",
        "user.lock": "an account was locked after failed sign-ins",
        "user.unlock": "a locked account was unlocked, with a reason",
        "membership.grant": "a role at a hospital was granted (or granted again)",
        "membership.revoke": "a role at a hospital was revoked, with a reason",
        "invitation.create": "a manager invited a new person to a role at a hospital (a one-time link was e-mailed)",
        "invitation.accept": "an invited person chose their password; their account and role were created",
        "invitation.revoke": "a manager withdrew an unused invitation, with a reason",
        "login.success": "a sign-in succeeded",
        "login.failure": "a sign-in failed (wrong password)",
        "api_token.issue": "an API token was issued at sign-in (never its key)",
        "api_token.revoke": "a user's API tokens were revoked",
    },
)

register_auditable_fields("accounts.Hospital", ["code", "name", "country"])
register_auditable_fields(
    "accounts.User",
    ["email", "full_name", "is_active", "is_staff", "is_superuser", "failed_login_count", "locked_until"],
)
register_auditable_fields("accounts.Membership", ["user.email", "hospital.code", "role", "is_active"])
register_auditable_fields("accounts.ApiToken", ["user.email"])
register_auditable_fields(
    "accounts.Invitation",
    ["email", "full_name", "hospital.code", "role", "expires_at", "invited_by.email", "accepted_at", "revoked_at"],
)
