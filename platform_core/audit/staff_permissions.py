"""Staff read the audit trail of their own hospitals and trials in the admin (see accounts.staff_groups)."""

from platform_core.accounts.staff_groups import TRIAL_MANAGERS

STAFF_PERMISSIONS = {
    TRIAL_MANAGERS: {"auditevent": ("view",)},
}
