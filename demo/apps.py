from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo seeding on top of every other app: it may import trials and diagnosis; nothing imports it."""

    name = "demo"
    verbose_name = "Demo data"
