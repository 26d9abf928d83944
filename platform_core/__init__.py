"""Visus project package: settings, URL wiring, Celery app, accounts and the audit trail.

Named ``platform_core`` because a package called ``platform`` would shadow the standard library.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
