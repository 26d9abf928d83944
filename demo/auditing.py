"""Audit actions of the demo seeding (never in production: seed_demo refuses to run there)."""

from platform_core.audit.vocabulary import register_actions

register_actions(
    "demo",
    {
        "demo.reads_backdate": (
            "seed_demo dated the demo reader study's signed unaided reads earlier, so that its AI-aided phase "
            "follows the washout (demo only)"
        ),
    },
)
