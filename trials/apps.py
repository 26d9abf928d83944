from django.apps import AppConfig


class TrialsConfig(AppConfig):
    name = "trials"
    verbose_name = "Trials"

    def ready(self) -> None:
        # The audit app (below trials) knows no trial model: trials tells it which events a reviewer sees.
        from platform_core.audit.selectors import register_audit_scope
        from trials.selectors import audit_scope

        register_audit_scope(audit_scope)

        # people: a trial's managers manage the people of every site of their trials (accounts knows no trial).
        from platform_core.accounts.selectors import register_managed_hospitals
        from trials.selectors import managed_site_hospital_ids

        register_managed_hospitals(managed_site_hospital_ids)
