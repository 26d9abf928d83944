from django.apps import AppConfig


class TrialsConfig(AppConfig):
    name = "trials"
    verbose_name = "Trials"

    def ready(self) -> None:
        # The audit app (below trials) knows no trial model: trials tells it which events a reviewer sees.
        from platform_core.audit.selectors import (
            register_audit_exclusion,
            register_audit_labeller,
            register_audit_object_filter,
            register_audit_scope,
        )
        from trials import audit_links
        from trials.selectors import audit_blinded, audit_scope

        register_audit_scope(audit_scope)
        register_audit_exclusion(audit_blinded)
        # ...and how its events read: filters by subject and case, labels and links instead of keys.
        register_audit_object_filter(audit_links.SUBJECT_FILTER)
        register_audit_object_filter(audit_links.CASE_FILTER)
        for object_type, labeller in audit_links.LABELLERS.items():
            register_audit_labeller(object_type, labeller)

        # The case page's data-query section (monitoring): trials' own panel, through the same hook.
        from trials import hooks
        from trials.monitoring_views import case_queries_context

        hooks.register_case_page_panel(
            hooks.CasePagePanel(name="queries", template="trials/case_queries.html", context=case_queries_context)
        )
