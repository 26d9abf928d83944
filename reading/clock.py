"""The reading clock: the time a reader's washout is measured against (``reading.services.servable_cases`` and
``reading.selectors.aided_phase_opens``).

A plain function over ``django.utils.timezone.now``, with no setting or switch: a deployment cannot move it.
The browser test of a whole two-phase study moves it past the washout with ``unittest.mock.patch(
"reading.clock.now", ...)``, which (a module attribute) the live server's thread sees too; signatures, audit
events and sessions keep the real time.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
