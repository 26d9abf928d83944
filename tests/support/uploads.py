"""Upload inputs the tests build by hand, and the base class of upload tests (its files removed after each)."""

from __future__ import annotations

import io

from django.core.files.storage import default_storage
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from tests.support.factories import TrialWorld
from tests.support.storage import stored_names
from trials.uploads.visual_field import N_POINTS


def vf_csv(eye="OD", *, fl=1, checks=14, fp=3, fn=2, sens=28.0) -> bytes:
    values = [("" if i in (26, 35) else f"{sens - (i % 5):g}") for i in range(1, N_POINTS + 1)]
    header = [
        "eye",
        "age",
        *[f"s{i}" for i in range(1, N_POINTS + 1)],
        "fixation_losses",
        "fixation_checks",
        "false_positives",
        "false_negatives",
    ]
    row = [eye, "63", *values, str(fl), str(checks), str(fp), str(fn)]
    return (",".join(header) + "\n" + ",".join(row) + "\n").encode()


class UploadTestCase(TestCase):
    modalities = ("fundus", "visual_field", "oct")

    def setUp(self):
        self.w = TrialWorld(modalities=self.modalities)
        self.api = APIClient()
        self.api.force_authenticate(self.w.coord1)
        self.url = reverse("api:trials:case-file-upload", args=[self.w.case1.pk])  # OD, day 0, site H01
        self.before_objects = stored_names()

    def tearDown(self):
        for name in stored_names() - self.before_objects:
            default_storage.delete(name)

    def upload(self, data: bytes, name="file.bin", client=None, url=None):
        handle = io.BytesIO(data)
        handle.name = name
        return (client or self.api).post(url or self.url, {"file": handle}, format="multipart")
