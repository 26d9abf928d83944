"""What staff may do with the model registry in the Django admin (see platform_core.accounts.staff_groups).

Predictions, jobs and fusion calibrations are listed without the AI outputs of trials the staff member reads (blinding).
"""

from platform_core.accounts.staff_groups import TRIAL_MANAGERS

STAFF_PERMISSIONS = {
    TRIAL_MANAGERS: {
        "modelversion": ("add", "change", "view"),
        "inferencejob": ("view",),
        "prediction": ("view",),
        "fusioncalibration": ("view",),
    },
}
