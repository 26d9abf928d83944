"""Visual fields through the real upload pipeline: the perimeter's own values, GHT, maker, age, re-judging."""

from __future__ import annotations

import io
import math

from django.core.exceptions import ValidationError
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from platform_core.audit.models import AuditEvent
from tests.support import dicom_factories
from tests.support.uploads import UploadTestCase, vf_csv
from trials.file_services import upload_context
from trials.models import CaseFile, VisualFieldResult
from trials.services import case_create, trial_update
from trials.uploads.visual_field import (
    COORDINATES,
    VisualFieldAnalysis,
    load_normals,
    render_pattern_deviation_plot,
)


def perimetry(edit=None) -> bytes:
    """A right-eye perimetry object at the age-normal of the test subject (60), changed by ``edit(ds)``."""
    values = [round(float(v), 1) for v in load_normals().expected(60.0)]
    values[25] = values[34] = math.nan
    ds = dcmread(io.BytesIO(dicom_factories.visual_field(tuple(values))))
    if edit is not None:
        edit(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def ght_as_text(text: str):
    def edit(ds):
        ght = ds.VisualFieldGlobalResultsIndexSequence[0].DataObservationSequence[1]
        del ght.ConceptCodeSequence
        ght.TextValue = text

    return edit


# The perimeter's own PD symbols: a superior nasal step at (-27, 3) and (-21, 3), p < 0.5% and p < 2%.
DEVICE_PDP = {(-27, 3): 0.5, (-21, 3): 2.0}


def with_device_maps(ds):
    for item in ds.VisualFieldTestPointSequence:
        x, y = float(item.VisualFieldTestPointXCoordinate), float(item.VisualFieldTestPointYCoordinate)
        normals = Dataset()
        normals.AgeCorrectedSensitivityDeviationValue = -1.0
        normals.AgeCorrectedSensitivityDeviationProbabilityValue = 100.0
        normals.GeneralizedDefectCorrectedSensitivityDeviationValue = -8.0 if (x, y) in DEVICE_PDP else 0.0
        normals.GeneralizedDefectCorrectedSensitivityDeviationProbabilityValue = DEVICE_PDP.get((x, y), 100.0)
        item.VisualFieldTestPointNormalsSequence = Sequence([normals])


class PerimeterValuesTests(UploadTestCase):
    modalities = ("visual_field",)

    def test_a_ght_given_as_text_survives_de_identification(self):
        response = self.upload(perimetry(ght_as_text("Borderline")), "vf.dcm")
        self.assertEqual(response.status_code, 201, response.content)
        result = VisualFieldResult.objects.get()
        self.assertEqual(result.glaucoma_hemifield_test, "Borderline")
        self.assertEqual(result.indices_source["ght"], "perimeter")

    def test_a_field_without_a_ght_gets_the_computed_one_and_says_so(self):
        def drop_ght(ds):
            ds.VisualFieldGlobalResultsIndexSequence[0].DataObservationSequence.pop(1)

        self.assertEqual(self.upload(perimetry(drop_ght), "vf.dcm").status_code, 201)
        result = VisualFieldResult.objects.get()
        self.assertEqual(result.glaucoma_hemifield_test, "Within normal limits")
        self.assertEqual(result.indices_source["ght"], "computed")

    def test_the_net_plot_is_drawn_from_the_perimeter_symbols(self):
        response = self.upload(perimetry(with_device_maps), "vf.dcm")
        self.assertEqual(response.status_code, 201, response.content)
        result = VisualFieldResult.objects.get()
        index = {xy: i for i, xy in enumerate(COORDINATES)}
        self.assertEqual(result.pattern_deviation_probability[index[(-27, 3)]], 0.005)
        self.assertEqual(result.pattern_deviation_probability[index[(-21, 3)]], 0.02)
        self.assertEqual(result.pattern_deviation[index[(-27, 3)]], -8.0)
        for key in ("td", "pd", "tdp", "pdp"):
            self.assertEqual(result.indices_source[key], "perimeter")
        self.assertEqual(result.indices_source["md"], "perimeter")
        # The stored plot is the device's symbols, not a recomputation (which finds nothing on a flat field).
        device_only = VisualFieldAnalysis(
            eye="OD",
            total_deviation=tuple(result.total_deviation),
            pattern_deviation=tuple(result.pattern_deviation),
            total_deviation_probability=tuple(result.total_deviation_probability),
            pattern_deviation_probability=tuple(result.pattern_deviation_probability),
            general_height=0.0,
            computed_mean_deviation=0.0,
            computed_pattern_standard_deviation=0.0,
            computed_visual_field_index=100.0,
            mean_deviation=0.0,
            pattern_standard_deviation=0.0,
            visual_field_index=100.0,
            indices_source={},
            reliability=None,  # type: ignore[arg-type]
            normals="",
        )
        with result.pd_plot.open("rb") as handle:
            self.assertEqual(handle.read(), render_pattern_deviation_plot(device_only, size=224))

    def test_without_device_maps_the_computed_ones_are_used_and_labelled(self):
        self.assertEqual(self.upload(perimetry(), "vf.dcm").status_code, 201)
        result = VisualFieldResult.objects.get()
        self.assertEqual(result.indices_source["pdp"], "computed")
        self.assertEqual(set(p for p in result.pattern_deviation_probability if p is not None), {1.0})

    def test_an_octopus_field_is_refused_naming_the_maker_and_nothing_is_stored(self):
        def octopus(ds):
            ds.Manufacturer = "HAAG-STREIT AG"
            ds.ManufacturerModelName = "Octopus 900"

        response = self.upload(perimetry(octopus), "vf.dcm")
        self.assertEqual(response.status_code, 400)
        self.assertIn("Haag-Streit Octopus", response.json()["error"]["message"])
        self.assertFalse(CaseFile.objects.exists())

    def test_an_unknown_maker_is_refused_without_echoing_it(self):
        def unknown(ds):
            ds.Manufacturer = "Acme Perimetry Ltd"

        response = self.upload(perimetry(unknown), "vf.dcm")
        self.assertEqual(response.status_code, 400)
        self.assertIn("Humphrey", response.json()["error"]["message"])
        self.assertNotIn("Acme", response.content.decode())

    def test_a_verdict_stores_the_cut_offs_it_was_made_with(self):
        self.upload(vf_csv(fp=3), "vf.csv")
        result = VisualFieldResult.objects.get()
        self.assertEqual(result.reliability_criteria["false_negatives_max"], 15.0)
        self.assertAlmostEqual(result.reliability_criteria["fixation_losses_max"], 200 / 13, places=3)


class AgeAtVisitTests(UploadTestCase):
    modalities = ("visual_field",)

    def test_dicom_fields_are_analysed_at_the_age_of_the_visit(self):
        later = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OD", visit_day=730)
        enrolled = float(self.w.subject1.age)
        self.assertEqual(upload_context(self.w.case1).subject_age_years, enrolled)
        self.assertAlmostEqual(upload_context(later).subject_age_years, enrolled + 730 / 365.25)


class RejudgeTests(UploadTestCase):
    modalities = ("visual_field",)

    def test_new_cut_offs_re_judge_stored_fields_with_an_audited_reason(self):
        self.upload(vf_csv(fp=12), "vf.csv")
        result = VisualFieldResult.objects.get()
        self.assertTrue(result.reliable)
        trial_update(actor=self.w.manager, trial=self.w.trial, vf_max_false_positives=10, reason="DSMB advice")
        result.refresh_from_db()
        self.assertFalse(result.reliable)
        self.assertEqual(result.reliability_reasons, ["false_positives >= 10%"])
        self.assertEqual(result.reliability_criteria["false_positives_max"], 10.0)
        event = AuditEvent.objects.get(action="visual_field.rejudge")
        self.assertEqual(event.reason, "DSMB advice")
        self.assertEqual(event.changes["reliable"], [True, False])
        summary = AuditEvent.objects.get(action="trial.visual_fields_rejudge")
        self.assertEqual(summary.changes["fields_judged"], [None, 1])
        self.assertEqual(summary.changes["verdicts_changed"], [None, 1])

    def test_fields_whose_verdict_stays_still_carry_the_new_cut_offs(self):
        self.upload(vf_csv(fp=3), "vf.csv")
        trial_update(actor=self.w.manager, trial=self.w.trial, vf_max_false_negatives=33, reason="protocol v2")
        result = VisualFieldResult.objects.get()
        self.assertTrue(result.reliable)
        self.assertEqual(result.reliability_criteria["false_negatives_max"], 33.0)
        self.assertFalse(AuditEvent.objects.filter(action="visual_field.rejudge").exists())
        self.assertEqual(AuditEvent.objects.get(action="trial.visual_fields_rejudge").reason, "protocol v2")

    def test_changing_cut_offs_of_a_recruiting_trial_needs_a_reason_and_changes_nothing_without(self):
        self.upload(vf_csv(fp=12), "vf.csv")
        with self.assertRaises(ValidationError):
            trial_update(actor=self.w.manager, trial=self.w.trial, vf_max_false_positives=10)
        self.assertTrue(VisualFieldResult.objects.get().reliable)
        self.assertFalse(AuditEvent.objects.filter(action="visual_field.rejudge").exists())
