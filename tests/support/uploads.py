"""Upload inputs the tests build by hand, and the base class of upload tests (its files removed after each)."""

from __future__ import annotations

import io

from django.core.files.storage import default_storage
from django.test import TestCase
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from tests.support.factories import TrialWorld
from tests.support.storage import stored_names
from trials.uploads.pipeline import UploadContext
from trials.uploads.visual_field import N_POINTS, ReliabilityCriteria


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


FIXTURE_PHOTOGRAPH = "fixtures/fundus-photograph-400x300.png"


def attach_photograph(case, actor=None):
    """A fundus photograph on ``case`` for fixtures that need a case with files (an empty case cannot be completed)
    but do not test uploads: a CaseFile row over one real PNG (``image_factories.fundus_pixels``) kept in storage
    under a fixed name and shared by every such row, so the pipeline's OCR is not paid per fixture. Tests of
    uploads go through ``trials.file_services.case_file_upload`` instead."""
    import hashlib

    from django.core.files.base import ContentFile

    from tests.support.image_factories import encoded, fundus_pixels
    from trials.models import CaseFile

    data = encoded(Image.fromarray(fundus_pixels(300, 400)), "PNG")
    if not default_storage.exists(FIXTURE_PHOTOGRAPH):
        default_storage.save(FIXTURE_PHOTOGRAPH, ContentFile(data))
    return CaseFile.objects.create(
        case=case,
        modality="fundus",
        file_format="png",
        content=FIXTURE_PHOTOGRAPH,
        preview=FIXTURE_PHOTOGRAPH,
        thumbnail=FIXTURE_PHOTOGRAPH,
        content_type="image/png",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        width=400,
        height=300,
        bits=8,
        deid_report={"pipeline": "image", "stripped": [], "orientation_applied": 1},
        uploaded_by=actor,
        gradable=True,
    )


def hostile_context(modalities: tuple[str, ...] = ("fundus", "oct", "visual_field")) -> UploadContext:
    """A context with small limits, for the hostile-input tests."""
    return UploadContext(
        uid_key=b"k" * 32,
        subject_pseudonym="SUBJ-0001",
        protocol_id="P1",
        protocol_name="Protocol",
        site_id="H01",
        visit_day=0,
        eye="OD",
        trial_modalities=modalities,
        subject_age_years=60.0,
        reliability=ReliabilityCriteria(),
        max_bytes=5_000_000,
        max_pixels=20_000_000,
        min_side=64,
    )
