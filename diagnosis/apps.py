from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"

    def ready(self) -> None:
        # Trials sits below diagnosis and must not import it, so diagnosis registers into trials' hooks:
        # a complete case is read by every active model that fits its files (queued after commit), and the
        # case page shows the AI panel (empty, with a note, for a reader of the trial).
        from diagnosis.selectors import case_ai_statuses, case_inference_context
        from diagnosis.services import inference_jobs_queue
        from trials import hooks

        hooks.on_case_completed(inference_jobs_queue)
        hooks.register_case_page_panel(
            hooks.CasePagePanel(name="ai", template="diagnosis/case_inference.html", context=case_inference_context)
        )
        hooks.register_case_ai_status(case_ai_statuses)  # the AI column of the trials completeness grid
