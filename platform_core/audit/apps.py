from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class AuditConfig(AppConfig):
    name = "platform_core.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # Each app's auditing module registers its audit actions and auditable fields (vocabulary.py).
        autodiscover_modules("auditing")
