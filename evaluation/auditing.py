"""Audit actions of evaluation: every export for statisticians is recorded (who, which export, which way)."""

from platform_core.audit.vocabulary import register_actions

register_actions(
    "evaluation",
    {
        "trial.export": "a trial's data were exported for statisticians (which export; page, API or command)",
    },
)
