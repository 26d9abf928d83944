"""A case with a photograph and a visual field, and small registered networks to run on it."""

from __future__ import annotations

from django.core.files.storage import default_storage

from diagnosis.registry import clear_model_cache
from tests.support import image_factories
from tests.support.factories import TrialWorld
from tests.support.registry import register_small_models
from tests.support.storage import stored_names
from tests.support.uploads import vf_csv
from trials.file_services import case_file_upload


class InferenceFixture:
    def build(self, *, vf_fp: int = 3):
        self.before_objects = stored_names("cases") | stored_names("models") | stored_names("predictions")
        clear_model_cache()
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.dr, self.vf = register_small_models()
        self.case = self.w.case1
        case_file_upload(actor=self.w.coord1, case=self.case, data=image_factories.plain_png(400, 300))
        case_file_upload(actor=self.w.coord1, case=self.case, data=vf_csv("OD", fp=vf_fp))

    def cleanup(self):
        clear_model_cache()
        after = stored_names("cases") | stored_names("models") | stored_names("predictions")
        for name in after - self.before_objects:
            default_storage.delete(name)
