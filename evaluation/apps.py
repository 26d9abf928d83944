from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    verbose_name = "Evaluation"

    def ready(self) -> None:
        # The dashboard's data version goes up after each committed write to an input of the analyses.
        from evaluation.signals import connect

        connect()
