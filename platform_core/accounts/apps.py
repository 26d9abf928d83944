from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "platform_core.accounts"
    label = "accounts"
    verbose_name = "Accounts and hospitals"

    def ready(self) -> None:
        from platform_core.accounts import signals  # noqa: F401
