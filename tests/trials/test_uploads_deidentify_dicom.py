import io
import math
import re
import uuid
from unittest import mock

import numpy as np
from django.test import SimpleTestCase
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from tests.trials import dicom_factories as factories
from trials.uploads.deidentify_dicom import (
    OCT,
    OP_8_BIT,
    DatePolicy,
    DeidentifyOptions,
    deidentify_dicom,
    frame_image,
    uid_for,
)
from trials.uploads.errors import UploadRejected

KEY = b"trial-key-0123456789abcdef-VISUS"


def options(**overrides) -> DeidentifyOptions:
    values = {
        "uid_key": KEY,
        "subject_pseudonym": "SUBJ-0042",
        "sponsor_name": "Visus Sponsor",
        "protocol_id": "VIS-DR-01",
        "site_id": "SITE-07",
        "time_point_id": "BASELINE",
    }
    values.update(overrides)
    return DeidentifyOptions(**values)


def walk(ds: Dataset):
    """Every element at every depth."""
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def vf_sensitivities() -> tuple[float, ...]:
    values = [28.0 - 0.1 * i for i in range(54)]
    values[25] = values[34] = math.nan
    values[40] = 0.0  # one point not seen
    return tuple(values)


ALL_OBJECTS = {
    "ophthalmic photography 8 bit": factories.ophthalmic_photograph,
    "ophthalmic photography 16 bit": lambda: factories.ophthalmic_photograph(bits=16),
    "ophthalmic tomography": factories.oct_volume,
    "visual field perimetry": lambda: factories.visual_field(vf_sensitivities()),
    "secondary capture": factories.secondary_capture,
    "file without preamble": lambda: factories.ophthalmic_photograph(preamble=False),
}


class PhiCanaryTests(SimpleTestCase):
    def test_no_canary_string_survives_in_the_output_bytes_of_any_accepted_object(self):
        for name, make in ALL_OBJECTS.items():
            with self.subTest(name):
                source = make()
                self.assertIn(b"CANARY", source)  # the canaries really are in the input
                result = deidentify_dicom(source, options=options())
                for canary in factories.CANARY_STRINGS:
                    self.assertNotIn(canary, result.data, f"{canary!r} leaked from {name}")

    def test_no_private_element_remains_at_any_depth(self):
        for name, make in ALL_OBJECTS.items():
            with self.subTest(name):
                ds = read(deidentify_dicom(make(), options=options()).data)
                private = [str(e.tag) for e in walk(ds) if e.tag.group % 2 == 1]
                self.assertEqual(private, [])

    def test_patient_name_and_id_become_the_subject_pseudonym_everywhere(self):
        ds = read(deidentify_dicom(factories.ophthalmic_photograph(), options=options()).data)
        names = [str(e.value) for e in walk(ds) if e.keyword == "PatientName"]
        self.assertGreaterEqual(len(names), 2)  # top level and the copy nested two sequences down
        self.assertEqual(set(names), {"SUBJ-0042"})
        self.assertEqual(ds.PatientID, "SUBJ-0042")

    def test_no_name_valued_attribute_keeps_a_value_other_than_the_pseudonym_or_a_dummy(self):
        ds = read(deidentify_dicom(factories.ophthalmic_photograph(), options=options()).data)
        values = {str(e.value) for e in walk(ds) if e.VR == "PN" and e.value}
        self.assertLessEqual(values, {"SUBJ-0042", "ANONYMOUS"})

    def test_dates_are_removed_or_dummied_by_default(self):
        for name, make in ALL_OBJECTS.items():
            with self.subTest(name):
                ds = read(deidentify_dicom(make(), options=options()).data)
                values = {str(e.value) for e in walk(ds) if e.VR in ("DA", "DT") and e.value}
                self.assertLessEqual(values, {"19000101", "19000101000000"})
                self.assertEqual(ds.LongitudinalTemporalInformationModified, "REMOVED")

    def test_free_text_descriptions_and_comments_are_removed(self):
        ds = read(deidentify_dicom(factories.visual_field(vf_sensitivities()), options=options()).data)
        for keyword in (
            "StudyDescription",
            "SeriesDescription",
            "ImageComments",
            "ProtocolName",
            "PatientComments",
            "CommentsOnPatientPerformanceOfVisualField",
            "InstitutionName",
            "InstitutionAddress",
            "StationName",
            "OperatorsName",
            "OtherPatientIDs",
            "PatientAddress",
        ):
            self.assertNotIn(keyword, ds, keyword)

    def test_identifying_value_hidden_in_a_kept_attribute_makes_the_file_refused(self):
        ds = read(factories.ophthalmic_photograph())
        ds.ManufacturerModelName = "Model for CANARY^PATIENT"  # a field the profile keeps
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        with self.assertRaises(UploadRejected) as ctx:
            deidentify_dicom(out.getvalue(), options=options())
        self.assertEqual(ctx.exception.code, "deidentification_incomplete")
        self.assertNotIn("CANARY", ctx.exception.message)


class UidReplacementTests(SimpleTestCase):
    def test_uid_for_is_deterministic_keyed_and_a_valid_2_25_uid(self):
        original = "1.2.826.0.1.3680043.8.498.12345"
        first, again = uid_for(KEY, original), uid_for(KEY, original)
        self.assertEqual(first, again)
        self.assertNotEqual(first, uid_for(b"another-trial-key-0123456789", original))
        self.assertNotEqual(first, uid_for(KEY, original + "1"))
        self.assertRegex(first, r"^2\.25\.[1-9][0-9]*$")
        self.assertLessEqual(len(first), 64)
        value = uuid.UUID(int=int(first[5:]))
        self.assertEqual(value.version, 8)
        self.assertEqual(value.variant, uuid.RFC_4122)

    def test_references_between_files_of_one_trial_still_resolve(self):
        fundus = read(deidentify_dicom(factories.ophthalmic_photograph(), options=options()).data)
        oct_ = read(deidentify_dicom(factories.oct_volume(), options=options()).data)
        self.assertNotEqual(fundus.SOPInstanceUID, factories.FUNDUS_SOP_INSTANCE_UID)
        self.assertEqual(oct_.ReferencedImageSequence[0].ReferencedSOPInstanceUID, fundus.SOPInstanceUID)
        for frame in oct_.PerFrameFunctionalGroupsSequence:
            location = frame.OphthalmicFrameLocationSequence[0]
            self.assertEqual(location.ReferencedSOPInstanceUID, fundus.SOPInstanceUID)

    def test_another_trial_key_gives_unrelated_uids(self):
        source = factories.ophthalmic_photograph()
        a = read(deidentify_dicom(source, options=options()).data)
        b = read(deidentify_dicom(source, options=options(uid_key=b"x" * 32)).data)
        self.assertNotEqual(a.SOPInstanceUID, b.SOPInstanceUID)
        self.assertNotEqual(a.StudyInstanceUID, b.StudyInstanceUID)

    def test_class_uids_are_kept_and_file_meta_matches_the_new_instance(self):
        ds = read(deidentify_dicom(factories.oct_volume(), options=options()).data)
        self.assertEqual(ds.SOPClassUID, OCT)
        self.assertEqual(ds.file_meta.MediaStorageSOPClassUID, OCT)
        self.assertEqual(ds.file_meta.MediaStorageSOPInstanceUID, ds.SOPInstanceUID)
        self.assertEqual(ds.ReferencedImageSequence[0].ReferencedSOPClassUID, OP_8_BIT)
        self.assertNotIn("SourceApplicationEntityTitle", ds.file_meta)

    def test_every_instance_uid_in_the_output_is_under_2_25_or_a_dicom_class_uid(self):
        ds = read(deidentify_dicom(factories.oct_volume(), options=options()).data)
        for elem in walk(ds):
            if elem.VR == "UI":
                self.assertTrue(re.match(r"^(2\.25\.|1\.2\.840\.10008\.)", str(elem.value)), elem.keyword)


class MarkersAndDatePolicyTests(SimpleTestCase):
    def test_markers_and_clinical_trial_attributes_are_written(self):
        result = deidentify_dicom(factories.ophthalmic_photograph(), options=options(site_name="Site seven"))
        ds = read(result.data)
        self.assertEqual(ds.PatientIdentityRemoved, "YES")
        self.assertIn("PS3.15 E.1 Basic Application Confidentiality Profile", ds.DeidentificationMethod)
        codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in ds.DeidentificationMethodCodeSequence]
        self.assertEqual(codes, [("113100", "DCM")])
        self.assertEqual(result.options_used, ("113100",))
        self.assertEqual(ds.ClinicalTrialSponsorName, "Visus Sponsor")
        self.assertEqual(ds.ClinicalTrialProtocolID, "VIS-DR-01")
        self.assertEqual(ds.ClinicalTrialSiteID, "SITE-07")
        self.assertEqual(ds.ClinicalTrialSiteName, "Site seven")
        self.assertEqual(ds.ClinicalTrialSubjectID, "SUBJ-0042")
        self.assertEqual(ds.ClinicalTrialTimePointID, "BASELINE")

    def test_shifted_dates_keep_intervals_and_declare_the_modified_dates_option(self):
        result = deidentify_dicom(
            factories.oct_volume(), options=options(date_policy=DatePolicy.SHIFT, date_shift_days=-10)
        )
        ds = read(result.data)
        self.assertEqual(ds.StudyDate, "20240305")
        self.assertEqual(ds.AcquisitionDateTime, "20240305101112.000000")  # timezone offset dropped
        frame_times = [f.FrameContentSequence[0].FrameAcquisitionDateTime for f in ds.PerFrameFunctionalGroupsSequence]
        self.assertEqual(frame_times[0], "20240305101110.123456")
        self.assertEqual(ds.PatientBirthDate, "")
        self.assertIn("113107", result.options_used)
        self.assertEqual(ds.LongitudinalTemporalInformationModified, "MODIFIED")

    def test_year_only_policy_keeps_the_year_and_nothing_finer(self):
        ds = read(deidentify_dicom(factories.ophthalmic_photograph(), options=options(date_policy="keep_year")).data)
        self.assertEqual(ds.StudyDate, "20240101")
        self.assertEqual(ds.AcquisitionDateTime, "2024")
        self.assertEqual(ds.PatientBirthDate, "")

    def test_retained_patient_characteristics_keep_sex_and_cap_age_at_90(self):
        ds = read(factories.ophthalmic_photograph())
        ds.PatientAge = "093Y"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        result = deidentify_dicom(out.getvalue(), options=options(retain_patient_characteristics=True))
        clean = read(result.data)
        self.assertEqual(clean.PatientSex, "F")
        self.assertEqual(clean.PatientAge, "090Y")
        self.assertIn("113108", result.options_used)
        self.assertEqual(result.metadata.patient_age_years, 90.0)

    def test_options_reject_a_short_key_and_a_missing_pseudonym(self):
        with self.assertRaises(ValueError):
            options(uid_key=b"short")
        with self.assertRaises(ValueError):
            options(subject_pseudonym=" ")


class RefusalTests(SimpleTestCase):
    def assertRefused(self, data: bytes, code: str, **overrides) -> UploadRejected:
        with self.assertRaises(UploadRejected) as ctx:
            deidentify_dicom(data, options=options(**overrides))
        self.assertEqual(ctx.exception.code, code)
        self.assertNotIn("CANARY", ctx.exception.message)
        self.assertNotIn("1961", ctx.exception.message)
        return ctx.exception

    def test_encapsulated_pdf_is_refused_with_the_printout_message(self):
        error = self.assertRefused(factories.encapsulated_pdf(), "pdf_printout")
        self.assertIn("DICOM export", error.message)

    def test_burned_in_annotation_yes_is_refused(self):
        self.assertRefused(factories.ophthalmic_photograph(burned_in="YES"), "burned_in_annotation")

    def test_image_that_does_not_declare_burned_in_annotation_is_refused_unless_the_trial_allows_it(self):
        data = factories.ophthalmic_photograph(burned_in=None)
        self.assertRefused(data, "burned_in_annotation_unknown")
        self.assertEqual(
            deidentify_dicom(data, options=options(allow_missing_burned_in_annotation=True)).metadata.modality,
            "fundus",
        )

    def test_huge_header_is_refused_before_any_pixel_is_decoded(self):
        with (
            mock.patch.object(Dataset, "pixel_array", new_callable=mock.PropertyMock) as pixel_array,
            mock.patch("trials.uploads.deidentify_dicom.pixel_array") as decode,
        ):
            error = self.assertRefused(factories.huge_header_image(), "too_many_pixels")
        pixel_array.assert_not_called()
        decode.assert_not_called()
        self.assertIn("limit", error.message)

    def test_pixel_budget_is_a_parameter(self):
        self.assertRefused(factories.oct_volume(frames=4, rows=32, columns=48), "too_many_pixels", max_pixels=6000)

    def test_truncated_pixel_data_is_refused(self):
        data = factories.ophthalmic_photograph()
        with self.assertRaises(UploadRejected) as ctx:
            deidentify_dicom(data[:-2000], options=options())
        self.assertIn(ctx.exception.code, {"truncated", "dicom_unreadable"})

    def test_a_sop_class_the_trials_do_not_take_is_refused(self):
        ds = read(factories.secondary_capture())
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        self.assertRefused(out.getvalue(), "sop_class_refused")

    def test_recognisable_facial_features_are_refused(self):
        ds = read(factories.ophthalmic_photograph())
        ds.RecognizableVisualFeatures = "YES"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        self.assertRefused(out.getvalue(), "recognizable_features")

    def test_garbage_after_the_dicom_magic_is_refused_as_unreadable(self):
        self.assertRefused(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"1" * 20, "dicom_unreadable")


class MetadataAndReportTests(SimpleTestCase):
    def test_each_object_is_classified_and_described(self):
        op = deidentify_dicom(factories.ophthalmic_photograph(rows=64, columns=80), options=options()).metadata
        self.assertEqual((op.modality, op.rows, op.columns, op.frames), ("fundus", 64, 80, 1))
        self.assertEqual((op.bits_allocated, op.samples_per_pixel, op.laterality), (8, 3, "OD"))
        self.assertEqual(op.sop_class_name, "Ophthalmic Photography 8 Bit Image")
        op16 = deidentify_dicom(factories.ophthalmic_photograph(bits=16), options=options()).metadata
        self.assertEqual((op16.modality, op16.bits_allocated, op16.bits_stored), ("fundus", 16, 12))
        oct_ = deidentify_dicom(factories.oct_volume(), options=options()).metadata
        self.assertEqual((oct_.modality, oct_.frames, oct_.laterality), ("oct", 4, "OS"))
        vf = deidentify_dicom(factories.visual_field(vf_sensitivities()), options=options()).metadata
        self.assertEqual((vf.modality, vf.rows, vf.laterality, vf.patient_age_years), ("visual_field", None, "OD", 63))
        sc = deidentify_dicom(factories.secondary_capture(), options=options()).metadata
        self.assertEqual((sc.modality, sc.sop_class_name), ("fundus", "Secondary Capture Image"))
        sc_oct = deidentify_dicom(factories.secondary_capture(modality="OPT"), options=options()).metadata
        self.assertEqual(sc_oct.modality, "oct")

    def test_report_names_tags_and_actions_but_never_values(self):
        result = deidentify_dicom(factories.oct_volume(), options=options())
        rows = result.report_dicts()
        self.assertTrue(all(set(r) == {"keyword", "tag", "action", "count"} for r in rows))
        by_keyword = {(r["keyword"], r["action"]) for r in rows}
        self.assertIn(("PatientBirthDate", "Z"), by_keyword)
        self.assertIn(("InstitutionName", "X"), by_keyword)
        self.assertIn(("StudyInstanceUID", "U"), by_keyword)
        self.assertIn(("FrameAcquisitionDateTime", "D"), by_keyword)
        self.assertIn(("(private)", "X"), by_keyword)
        self.assertIn(("GraphicAnnotationSequence", "Z"), by_keyword)  # D on a sequence empties it
        self.assertIn(("PatientBirthDateInAlternativeCalendar", "X"), by_keyword)  # a Visus addition
        self.assertIn(("ReferencedImageSequence", "U"), by_keyword)  # X/Z/U*: references kept, UIDs replaced
        frame_dates = next(r for r in rows if r["keyword"] == "FrameAcquisitionDateTime")
        self.assertEqual(frame_dates["count"], 4)
        self.assertNotIn("CANARY", repr(rows).upper())
        self.assertNotIn("2024", repr(rows))

    def test_perimetry_object_is_read_into_a_visual_field(self):
        for laterality, eye in (("R", "OD"), ("L", "OS")):
            with self.subTest(eye):
                result = deidentify_dicom(
                    factories.visual_field(vf_sensitivities(), laterality=laterality), options=options()
                )
                field = result.visual_field
                self.assertIsNotNone(field)
                self.assertEqual(field.eye, eye)
                expected = vf_sensitivities()
                for i in range(54):
                    if i in (25, 34):
                        continue
                    want = -1.0 if expected[i] == 0.0 else expected[i]  # NOT SEEN points are "<0 dB"
                    self.assertAlmostEqual(field.sensitivities[i], want, places=4)
                self.assertEqual((field.mean_deviation, field.pattern_standard_deviation), (-1.5, 2.1))
                self.assertEqual(field.visual_field_index, 97)
                self.assertEqual(field.glaucoma_hemifield_test, "Within normal limits")
                self.assertAlmostEqual(field.fixation_loss_percent, 400 / 14)
                self.assertEqual((field.false_positive_percent, field.false_negative_percent), (3.0, 10.0))
                self.assertEqual(field.age, 63)

    def test_subject_age_from_the_crf_overrides_the_dicom_age(self):
        result = deidentify_dicom(factories.visual_field(vf_sensitivities()), options=options(subject_age_years=55))
        self.assertEqual(result.visual_field.age, 55)


class PixelHandlingTests(SimpleTestCase):
    def test_native_pixel_data_is_copied_unchanged(self):
        source = read(factories.ophthalmic_photograph())
        result = read(deidentify_dicom(factories.ophthalmic_photograph(), options=options()).data)
        self.assertEqual(result.PixelData, source.PixelData)

    def test_compressed_pixel_data_is_copied_without_decoding(self):
        ds = read(factories.ophthalmic_photograph(rows=64, columns=64))
        jpeg = io.BytesIO()
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(jpeg, format="JPEG")
        ds.PixelData = encapsulate([jpeg.getvalue()])
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds["PixelData"].VR = "OB"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        with mock.patch("trials.uploads.deidentify_dicom.pixel_array") as decode:
            result = deidentify_dicom(out.getvalue(), options=options())
        decode.assert_not_called()
        clean = read(result.data)
        self.assertEqual(clean.file_meta.TransferSyntaxUID, JPEGBaseline8Bit)
        self.assertEqual(clean.PixelData, ds.PixelData)

    def test_frame_image_decodes_one_frame_to_eight_bits(self):
        photo16 = frame_image(deidentify_dicom(factories.ophthalmic_photograph(bits=16), options=options()).data)
        self.assertEqual((photo16.mode, photo16.size), ("L", (256, 256)))
        self.assertGreater(np.asarray(photo16).max(), 200)  # 12-bit values scaled by BitsStored, not clipped
        oct_frame = frame_image(deidentify_dicom(factories.oct_volume(), options=options()).data, frame=2)
        self.assertEqual(oct_frame.size, (48, 32))
        with self.assertRaises(ValueError):
            frame_image(deidentify_dicom(factories.oct_volume(), options=options()).data, frame=4)
