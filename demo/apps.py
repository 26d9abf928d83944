from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo seeding on top of every other app: it may import trials and diagnosis; nothing imports it."""

    name = "demo"
    verbose_name = "Demo data"

    def ready(self) -> None:
        # `train_model --demo` (diagnosis) trains on the data shipped here, through these recipes.
        from demo.training import train_demo_dr, train_demo_fundus_glaucoma, train_demo_vf
        from diagnosis.training.recipes import register_demo_recipe

        register_demo_recipe("zoom_in_net", train_demo_dr)
        register_demo_recipe("fundus_glaucoma", train_demo_fundus_glaucoma)
        register_demo_recipe("vf_glaucoma", train_demo_vf)
