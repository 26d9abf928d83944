"""`train_model --trial` trains the visual-field net on the inputs the workers give it for the same case."""

from __future__ import annotations

import io

import torch
from django.core.files.storage import default_storage
from django.test import TestCase
from PIL import Image

from diagnosis.management.commands.train_model import trial_visual_fields
from diagnosis.networks.inference import VisualFieldItem, normalise_images, preprocess_visual_field
from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig
from tests.support.factories import TrialWorld
from tests.support.storage import stored_names
from tests.support.uploads import vf_csv
from trials.file_services import case_file_upload
from trials.models import VisualFieldResult
from trials.services import reference_standard_record


def with_perimeter_indices(csv: bytes, *, md: float, psd: float, vfi: float) -> bytes:
    header, row = csv.decode().strip().split("\n")
    return f"{header},md,psd,vfi\n{row},{md:g},{psd:g},{vfi:g}\n".encode()


class TrialVisualFieldInputsTests(TestCase):
    def setUp(self):
        self.before = stored_names()
        self.addCleanup(lambda: [default_storage.delete(n) for n in stored_names() - self.before])
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        csv = with_perimeter_indices(vf_csv("OD"), md=-7.25, psd=6.5, vfi=81.0)
        case_file_upload(actor=self.w.coord1, case=self.w.case1, data=csv)
        reference_standard_record(actor=self.w.manager, case=self.w.case1, source="imported", glaucoma="yes")

    def test_training_reads_the_stored_plot_and_the_perimeters_indices_as_serving_does(self):
        result = VisualFieldResult.objects.get(case=self.w.case1)
        self.assertEqual(result.indices_source["md"], "perimeter")
        config = VFGlaucomaConfig.small()
        data = trial_visual_fields(self.w.trial, config.input_size)
        self.assertEqual(len(data), 1)
        self.assertEqual(data.labels.tolist(), [1])
        self.assertEqual(data.groups, [str(self.w.subject1.pk)])
        self.assertEqual(data.indices[0].tolist(), [81.0, -7.25, 6.5])  # the perimeter's, not recomputed

        with default_storage.open(result.pd_plot.name, "rb") as handle:
            plot = Image.open(io.BytesIO(handle.read())).convert("RGB")
        served = preprocess_visual_field(
            VisualFieldItem(
                plot=plot,
                vfi=result.visual_field_index,
                md=result.mean_deviation,
                psd=result.pattern_standard_deviation,
            ),
            config,
        )
        torch.testing.assert_close(normalise_images(data.plots[:1])[0], served.plot)
        torch.testing.assert_close(data.indices[0], served.indices)
