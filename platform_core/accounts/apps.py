from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "platform_core.accounts"
    label = "accounts"
    verbose_name = "Accounts and hospitals"

    def ready(self) -> None:
        from platform_core.accounts import signals  # noqa: F401
        from platform_core.accounts.staff_groups import staff_groups_on_migrate

        # Staff permission groups are created on every installation, after each app's migrations.
        post_migrate.connect(staff_groups_on_migrate, dispatch_uid="accounts.staff_groups")
