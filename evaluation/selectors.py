"""Who may export a trial's data for statisticians.

Trial managers, statisticians and monitors of the trial may; readers never (exports hold every reader's answers,
the reference standard and the AI outputs, which blind reading hides from them: anyone who reads in the trial
is refused whatever other role they hold there); coordinators never, even of their own hospital (exports are
trial-wide, and a coordinator's work is their site's subjects, which the trial pages already show them).
"""

from __future__ import annotations

from platform_core.accounts.models import Role, User
from trials.models import Trial
from trials.selectors import trial_roles, user_is_blinded_to_ai

EXPORT_ROLES = frozenset({Role.TRIAL_MANAGER, Role.STATISTICIAN, Role.MONITOR})


def may_export(user: User, trial: Trial) -> bool:
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    return bool(trial_roles(user, trial) & EXPORT_ROLES) and not user_is_blinded_to_ai(user, trial)


def may_see_analyses(user: User, trial: Trial) -> bool:
    """The analysis dashboard: the same people as the exports (it shows every reader's accuracy, the reference
    standard and the AI's results, so never anyone who reads in the trial)."""
    return may_export(user, trial)
