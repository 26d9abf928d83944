"""What staff may do with trial data in the Django admin (see platform_core.accounts.staff_groups).

Created on every migrate. Every row a trial manager sees there is scoped to their trials and hospitals, and
every change goes through the same audited services as the trial pages.
"""

from platform_core.accounts.staff_groups import TRIAL_MANAGERS

STAFF_PERMISSIONS = {
    TRIAL_MANAGERS: {
        "trial": ("add", "change", "view"),
        "trialsite": ("add", "change", "view"),
        "subject": ("view",),
        "case": ("view",),
    },
}
