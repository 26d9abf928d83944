from django.apps import AppConfig


class TrialsConfig(AppConfig):
    name = "trials"
    verbose_name = "Trials"

    def ready(self) -> None:
        # The audit app (below trials) knows no trial model: trials tells it which events a reviewer sees.
        from platform_core.audit.selectors import register_audit_scope
        from trials.selectors import audit_scope

        register_audit_scope(audit_scope)
