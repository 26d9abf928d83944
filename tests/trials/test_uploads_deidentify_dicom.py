import io
import math
import re
import uuid
from unittest import mock

import numpy as np
from django.test import SimpleTestCase
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments, generate_frames, parse_basic_offsets
from pydicom.sequence import Sequence
from pydicom.uid import (
    HEVCMP51,
    MPEG4HP41,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from tests.support import dicom_factories as factories
from trials.uploads.deidentify_dicom import (
    OCT,
    OP_8_BIT,
    VISUAL_FIELD_STATIC,
    DatePolicy,
    DeidentifyOptions,
    deidentify_dicom,
    frame_image,
    uid_for,
)
from trials.uploads.dicom_dataset import _transfer_syntax
from trials.uploads.dicom_writer import write_file
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
        # The copy nested two sequences down is not on the allow-list for items: removed, not rewritten.
        self.assertEqual(names, ["SUBJ-0042"])
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
        ds.AnatomicRegionSequence[0].CodeValue = "CANARY-PATIENT"  # a code value: kept, and one code-like token
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
        self.assertEqual(codes, [("113100", "DCM"), ("113105", "DCM")])  # Basic Profile, Clean Descriptors
        self.assertEqual(result.options_used, ("113100", "113105"))
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
            mock.patch("trials.uploads.dicom_frames.get_decoder") as decode,
            mock.patch("trials.uploads.dicom_frames.pixel_array") as decode_frame,
        ):
            error = self.assertRefused(factories.huge_header_image(), "too_many_pixels")
        pixel_array.assert_not_called()
        decode.assert_not_called()
        decode_frame.assert_not_called()
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
        self.assertIn(("GraphicAnnotationSequence", "X"), by_keyword)  # not on the allow-list
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
                    want = -2.0 if expected[i] == 0.0 else expected[i]  # NOT SEEN points are "<0 dB", -2 as HFA
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

    def test_frame_image_decodes_one_frame_to_eight_bits(self):
        photo16 = frame_image(deidentify_dicom(factories.ophthalmic_photograph(bits=16), options=options()).data)
        self.assertEqual((photo16.mode, photo16.size), ("L", (256, 256)))
        self.assertGreater(np.asarray(photo16).max(), 200)  # 12-bit values scaled by BitsStored, not clipped
        oct_frame = frame_image(deidentify_dicom(factories.oct_volume(), options=options()).data, frame=2)
        self.assertEqual(oct_frame.size, (48, 32))
        with self.assertRaises(ValueError):
            frame_image(deidentify_dicom(factories.oct_volume(), options=options()).data, frame=4)


# ----------------------------------------------------------------------------------------------------------------
# Compressed frames: metadata segments go, the image stays
# ----------------------------------------------------------------------------------------------------------------
def save(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def frames_of(data: bytes) -> list[bytes]:
    ds = read(data)
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))


def jpeg_markers(frame: bytes) -> list[int]:
    """Every marker of a JPEG stream in order, entropy-coded data skipped (RSTn included as markers)."""
    markers, pos = [], 2
    while pos < len(frame):
        assert frame[pos] == 0xFF, f"no marker at {pos}"
        marker = frame[pos + 1]
        markers.append(marker)
        if marker == 0xD9:
            break
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        pos += 2 + length
        if marker == 0xDA:
            while not (frame[pos] == 0xFF and frame[pos + 1] not in (0x00, *range(0xD0, 0xD8))):
                pos += 1
    return markers


def pixels(data: bytes, frame: int = 0) -> np.ndarray:
    return np.asarray(frame_image(data, frame=frame))


def grey_j2k(*, jp2: bool = False) -> bytes:
    out = io.BytesIO()
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, size=(64, 64), dtype=np.uint8))
    image.save(out, format="JPEG2000", no_jp2=not jp2, comment=b"CANARY^PATIENT main header")
    return out.getvalue()


_METADATA_MARKERS = {*range(0xE0, 0xEE), 0xEF, 0xFE}  # APP0-APP13, APP15, COM


class CompressedFrameTests(SimpleTestCase):
    def assertNoCanary(self, data: bytes) -> None:
        for canary in factories.CANARY_STRINGS:
            self.assertNotIn(canary, data)

    def test_jpeg_frames_lose_com_exif_iptc_and_trailers_and_decode_to_the_same_pixels(self):
        source = factories.jpeg_photograph()
        self.assertIn(b"CANARY IPTC NAME", source)
        with (
            mock.patch("trials.uploads.dicom_frames.get_decoder") as decode,
            mock.patch("trials.uploads.dicom_frames.pixel_array") as decode_frame,
        ):
            result = deidentify_dicom(source, options=options())
        decode.assert_not_called()  # cleaned without decoding
        decode_frame.assert_not_called()
        self.assertNoCanary(result.data)
        (frame,) = frames_of(result.data)
        markers = jpeg_markers(frame)
        self.assertFalse(_METADATA_MARKERS & set(markers), [hex(m) for m in markers])
        self.assertTrue({0xC0, 0xC4, 0xDB, 0xDA} <= set(markers))
        self.assertEqual(markers[-1], 0xD9)
        self.assertTrue(frame.rstrip(b"\x00").endswith(b"\xff\xd9"))  # nothing after EOI
        # APP14 "Adobe" survives only as the fixed 12 bytes: version 100, no flags, the colour transform.
        self.assertIn(b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x01", frame)
        np.testing.assert_array_equal(pixels(result.data), pixels(source))
        self.assertIn(("PixelData", "stripped"), {(r.keyword, r.action) for r in result.report})
        self.assertEqual(read(result.data).file_meta.TransferSyntaxUID, JPEGBaseline8Bit)

    def test_progressive_jpeg_is_cleaned_between_scans_too(self):
        source = factories.jpeg_photograph(progressive=True)
        self.assertIn(b"CANARY between scans", source)
        result = deidentify_dicom(source, options=options())
        self.assertNoCanary(result.data)
        (frame,) = frames_of(result.data)
        markers = jpeg_markers(frame)
        self.assertGreater(markers.count(0xDA), 1)  # still every scan
        self.assertFalse(_METADATA_MARKERS & set(markers))
        np.testing.assert_array_equal(pixels(result.data), pixels(source))

    def test_every_frame_of_a_multi_frame_object_is_cleaned_and_kept_one_fragment_per_frame(self):
        frames = [factories.canary_jpeg(seed=1), factories.canary_jpeg(seed=2)]
        source = factories.encapsulated_photograph(frames)
        result = deidentify_dicom(source, options=options())
        self.assertNoCanary(result.data)
        ds = read(result.data)
        self.assertEqual(ds.NumberOfFrames, 2)
        offsets = parse_basic_offsets(ds.PixelData)
        self.assertEqual(len(offsets), 2)  # basic offset table as pydicom writes it
        after_table = ds.PixelData[8 + 4 * len(offsets) :]
        self.assertEqual(len(list(generate_fragments(after_table))), 2)  # one fragment per frame
        for i in range(2):
            np.testing.assert_array_equal(pixels(result.data, i), pixels(source, i))
        self.assertIn(("PixelData", "stripped", 2), {(r.keyword, r.action, r.count) for r in result.report})

    def test_identifier_in_a_kept_jpeg_table_is_caught_by_the_leak_check(self):
        jpeg = bytearray(factories.canary_jpeg())
        table = jpeg.index(b"\xff\xdb") + 5  # first DQT's 64 quantisation values
        jpeg[table : table + len(factories.CANARY_ID)] = factories.CANARY_ID.encode()
        with self.assertRaises(UploadRejected) as ctx:
            deidentify_dicom(factories.encapsulated_photograph([bytes(jpeg)]), options=options())
        self.assertEqual(ctx.exception.code, "deidentification_incomplete")

    def test_malformed_jpeg_frames_are_refused_as_damaged(self):
        good = factories.canary_jpeg()
        sos = good.index(b"\xff\xda")
        for name, frame in {
            "no SOI": b"\x00\x00" + good[2:],
            "segment longer than the frame": good[:2] + b"\xff\xfe\xff\xf0CANARY",
            "no EOI": good[: good.rindex(b"\xff\xd9")],
            "scan before the frame header": good[:2] + good[sos:],
        }.items():
            with self.subTest(name), self.assertRaises(UploadRejected) as ctx:
                deidentify_dicom(factories.encapsulated_photograph([frame]), options=options())
            self.assertEqual(ctx.exception.code, "dicom_pixels_damaged")
            self.assertNotIn("CANARY", ctx.exception.message)

    def test_jpeg_ls_frames_lose_comments_and_keep_bit_stuffed_data(self):
        sof55 = factories.jpeg_segment(0xF7, bytes([8, 0, 2, 0, 2, 1, 1, 0x11, 0]))
        sos = factories.jpeg_segment(0xDA, bytes([1, 1, 0, 0, 0, 0]))
        data = b"\x12\xff\x7f\x34\xff\x00\x56\x78"  # in JPEG-LS, 0xFF then a byte below 0x80 is data
        comment = factories.jpeg_segment(0xFE, b"CANARY^PATIENT")
        frame = b"\xff\xd8" + comment + sof55 + sos + data + b"\xff\xd9"
        source = factories.encapsulated_photograph([frame], syntax=JPEGLSLossless, rows=2, columns=2, rgb=False)
        (clean,) = frames_of(deidentify_dicom(source, options=options()).data)
        self.assertEqual(clean.rstrip(b"\x00"), b"\xff\xd8" + sof55 + sos + data + b"\xff\xd9")

    def test_jpeg_2000_comments_go_from_the_main_and_tile_part_headers(self):
        code = bytearray(grey_j2k())
        sot = code.index(b"\xff\x90")
        comment = factories.jpeg_segment(0x64, b"\x00\x01CANARY in a tile-part header")
        psot = int.from_bytes(code[sot + 6 : sot + 10], "big")
        if psot:
            code[sot + 6 : sot + 10] = (psot + len(comment)).to_bytes(4, "big")
        code[sot + 12 : sot + 12] = comment
        source = factories.encapsulated_photograph([bytes(code)], syntax=JPEG2000Lossless, rgb=False)
        self.assertEqual(bytes(code).count(b"CANARY"), 2)
        result = deidentify_dicom(source, options=options())
        self.assertNoCanary(result.data)
        (frame,) = frames_of(result.data)
        self.assertNotIn(b"\xff\x64", frame[: frame.index(b"\xff\x93")])
        np.testing.assert_array_equal(pixels(result.data), pixels(source))

    def test_jp2_wrapper_is_stripped_to_the_codestream(self):
        jp2 = grey_j2k(jp2=True)
        box = b"CANARY^PATIENT xml"
        jp2c = jp2.index(b"jp2c") - 4
        wrapped = jp2[:jp2c] + (8 + len(box)).to_bytes(4, "big") + b"xml " + box + jp2[jp2c:]
        source = factories.encapsulated_photograph([wrapped], syntax=JPEG2000Lossless, rgb=False)
        result = deidentify_dicom(source, options=options())
        self.assertNoCanary(result.data)
        (frame,) = frames_of(result.data)
        self.assertEqual(frame[:4], b"\xff\x4f\xff\x51")
        np.testing.assert_array_equal(pixels(result.data), pixels(source))

    def test_rle_frames_are_kept(self):
        ds = read(factories.ophthalmic_photograph(rows=32, columns=32))
        ds.compress(RLELossless, encoding_plugin="pydicom")
        source = save(ds)
        result = deidentify_dicom(source, options=options())
        self.assertEqual(frames_of(result.data), frames_of(source))
        np.testing.assert_array_equal(pixels(result.data), pixels(source))

    def test_compressions_that_cannot_be_cleaned_without_decoding_are_refused(self):
        for syntax in (MPEG4HP41, HEVCMP51, DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.4.53", "1.2.3.4"):
            with self.subTest(syntax):
                ds = read(factories.jpeg_photograph())
                ds.file_meta.TransferSyntaxUID = syntax
                if syntax == DeflatedExplicitVRLittleEndian:
                    ds = read(factories.ophthalmic_photograph(rows=16, columns=16))
                    ds.file_meta.TransferSyntaxUID = syntax
                with self.assertRaises(UploadRejected) as ctx:
                    deidentify_dicom(save(ds), options=options())
                self.assertEqual(ctx.exception.code, "compression_refused")
                self.assertIn("uncompressed or as JPEG", ctx.exception.message)


# ----------------------------------------------------------------------------------------------------------------
# The dictionary, not the file, says what an element is
# ----------------------------------------------------------------------------------------------------------------
class DictionaryVrTests(SimpleTestCase):
    def deidentify(self, mutate) -> tuple[Dataset, bytes]:
        ds = read(factories.ophthalmic_photograph())
        mutate(ds)
        data = deidentify_dicom(save(ds), options=options()).data
        return read(data), data

    def test_attributes_written_with_a_contradicting_vr_are_classified_by_the_dictionary(self):
        def mutate(ds):
            ds.add(DataElement(0x00140104, "LO", "JOHN^SMITH"))  # SecondaryReviewerName: PN
            ds.add(DataElement(0x00080108, "LO", "JOHN SMITH extended"))  # ExtendedCodeMeaning: LT
            ds.add(DataElement(0x00280106, "LO", "JOHN SMITH"))  # SmallestImagePixelValue: US or SS
            ds.add(DataElement(0x00082218, "LO", "JOHN SMITH"))  # AnatomicRegionSequence written as text
            ds.add(DataElement(0x00080020, "LO", "19610203"))  # StudyDate (Z) written as LO

        clean, data = self.deidentify(mutate)
        self.assertNotIn(b"JOHN", data)
        for keyword in ("SecondaryReviewerName", "ExtendedCodeMeaning", "SmallestImagePixelValue"):
            self.assertNotIn(keyword, clean)
        self.assertNotIn("AnatomicRegionSequence", clean)
        self.assertEqual((clean["StudyDate"].VR, clean.StudyDate), ("DA", ""))

    def test_a_uid_written_as_text_is_replaced_and_written_as_ui(self):
        def mutate(ds):
            ds.add(DataElement(0x00080018, "LO", "1.2.826.0.1.4455667788"))  # SOPInstanceUID

        clean, data = self.deidentify(mutate)
        self.assertEqual(clean["SOPInstanceUID"].VR, "UI")
        self.assertEqual(clean.SOPInstanceUID, uid_for(KEY, "1.2.826.0.1.4455667788"))
        self.assertNotIn(b"4455667788", data)

    def test_tags_the_dictionary_does_not_know_are_removed_whatever_vr_the_file_claims(self):
        def mutate(ds):
            ds.add(DataElement(0x00221FFE, "LO", "JOHN SMITH"))
            ds.add(DataElement(0x00221FFC, "UN", b"JOHN SMITH"))
            ds.add(DataElement(0xFFFE0001, "LO", "JOHN SMITH"))
            ds.AnatomicRegionSequence[0].add(DataElement(0x00221FFE, "LO", "JOHN SMITH nested"))
            ds.AnatomicRegionSequence[0].add(DataElement(0x00140104, "LO", "JOHN^NESTED"))

        clean, data = self.deidentify(mutate)
        self.assertNotIn(b"JOHN", data)
        tags = {int(e.tag) for e in walk(clean)}
        self.assertFalse({0x00221FFE, 0x00221FFC, 0xFFFE0001, 0x00140104} & tags)

    def test_pixel_data_inside_a_sequence_item_is_removed(self):
        def mutate(ds):
            ds.AnatomicRegionSequence[0].add(DataElement(0x7FE00010, "OB", b"JOHN SMITH"))

        clean, data = self.deidentify(mutate)
        self.assertNotIn(b"JOHN", data)
        self.assertNotIn("PixelData", clean.AnatomicRegionSequence[0])

    def test_unlisted_urls_and_dicomdir_fields_are_removed(self):
        def mutate(ds):
            ds.RetrieveURL = "https://pacs.example/studies/1?PatientID=MRN778899"
            ds.add_new(0x0040E010, "UR", "https://pacs.example/x?PatientID=MRN778899")  # RetrieveURI
            ds.add_new(0x00041130, "CS", "MRN778899")  # FileSetID
            ds.add_new(0x00041500, "CS", ["PATIENTS", "MRN778899"])  # ReferencedFileID

        clean, data = self.deidentify(mutate)
        self.assertNotIn(b"778899", data)
        self.assertFalse({int(e.tag) for e in walk(clean)} & {0x00081190, 0x0040E010, 0x00041130, 0x00041500})

    def test_only_uids_the_dicom_dictionary_knows_are_kept(self):
        def mutate(ds):
            ds.add(DataElement(0x00081167, "UI", "1.2.840.10008.999.4455667788"))  # MultiFrameSourceSOPInstanceUID
            item = Dataset()
            item.ReferencedSOPClassUID = "1.2.826.0.1.4455667799"  # a class keyword, but not a known class
            item.ReferencedSOPInstanceUID = "1.2.3"
            known = Dataset()
            known.ReferencedSOPClassUID = OP_8_BIT
            known.ReferencedSOPInstanceUID = "1.2.4"
            ds.ReferencedImageSequence = Sequence([item, known])

        clean, data = self.deidentify(mutate)
        self.assertNotIn(b"4455667788", data)
        self.assertNotIn(b"4455667799", data)
        self.assertNotIn("MultiFrameSourceSOPInstanceUID", clean)  # not on the allow-list
        references = clean.ReferencedImageSequence
        self.assertEqual(references[0].ReferencedSOPClassUID, uid_for(KEY, "1.2.826.0.1.4455667799"))
        self.assertEqual(references[1].ReferencedSOPClassUID, OP_8_BIT)


class LeakCheckTests(SimpleTestCase):
    def test_the_bytes_of_the_pixel_data_tag_in_an_earlier_element_do_not_end_the_leak_search(self):
        ds = read(factories.ophthalmic_photograph())
        ds.RedPaletteColorLookupTableData = b"\xe0\x7f\x10\x00"  # kept (OW), and before LossyImageCompression
        ds.LossyImageCompression = "CANARY"  # kept: a code string may hold a name
        data = save(ds)
        lossy = b"\x28\x00\x10\x21CS\x06\x00CANARY"  # (0028,2110) CS, explicit VR little endian
        self.assertLess(data.index(b"\xe0\x7f\x10\x00"), data.index(lossy))
        with self.assertRaises(UploadRejected) as ctx:
            deidentify_dicom(data, options=options())
        self.assertEqual(ctx.exception.code, "deidentification_incomplete")


class NativePixelTests(SimpleTestCase):
    def test_bits_above_high_bit_are_cleared_and_reported(self):
        ds = read(factories.ophthalmic_photograph(bits=16))
        stored = np.frombuffer(ds.PixelData, dtype="<u2").reshape(256, 256).copy()
        overlay = np.zeros_like(stored)
        overlay[10:20, 10:200] = 1  # an old-style overlay (text bitmap) in bit 15
        ds.PixelData = (stored | (overlay << 15) | (overlay << 12)).tobytes()
        result = deidentify_dicom(save(ds), options=options())
        clean = np.frombuffer(read(result.data).PixelData, dtype="<u2").reshape(256, 256)
        np.testing.assert_array_equal(clean, stored)  # the 12 stored bits unchanged, nothing above
        self.assertIn(("PixelData", "masked"), {(r.keyword, r.action) for r in result.report})

    def test_signed_samples_are_sign_extended_from_the_high_bit(self):
        ds = read(factories.ophthalmic_photograph(bits=16, rows=2, columns=2))
        ds.PixelRepresentation = 1
        # 12-bit two's complement: -5 (0xFFB) and 2047 (0x7FF), with junk in the top four bits.
        ds.PixelData = np.array([0x5FFB, 0xA7FF, 0x0FFB, 0xF001], dtype="<u2").tobytes()
        clean = read(deidentify_dicom(save(ds), options=options()).data)
        values = np.frombuffer(clean.PixelData, dtype="<i2")
        np.testing.assert_array_equal(values, [-5, 2047, -5, 1])

    def test_bytes_after_the_declared_frames_are_dropped(self):
        ds = read(factories.ophthalmic_photograph(rows=16, columns=16))
        expected = len(ds.PixelData)
        ds.PixelData = ds.PixelData + b"CANARY^PATIENT hidden after the last frame"
        result = deidentify_dicom(save(ds), options=options())
        self.assertNotIn(b"CANARY", result.data)
        self.assertEqual(len(read(result.data).PixelData), expected)

    def test_pixel_data_in_a_perimetry_object_is_removed(self):
        ds = read(factories.visual_field(vf_sensitivities()))
        ds.add(DataElement(0x7FE00010, "OB", b"CANARY^PATIENT in pixels"))
        result = deidentify_dicom(save(ds), options=options())
        self.assertNotIn(b"CANARY", result.data)
        self.assertNotIn("PixelData", read(result.data))


_PLANTED_VRS = ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT", "UI")


def _planted_value(vr: str, n: int) -> str:
    return {
        "AS": "077Y",
        "DA": "20010203",
        "DT": "20010203040506",
        "TM": "040506",
        "DS": f"{700000 + n}",
        "IS": f"{700000 + n}",
        "PN": f"PLANTED^N{n}",
        "UI": f"1.2.3.{n}",
        "UR": f"http://planted.example/{n}",
    }.get(vr, f"PLANT{n}")


def plant_every_text_attribute(data: bytes) -> tuple[bytes, dict[int, str]]:
    """A value in every text-VR attribute of the DICOM dictionary the object does not already hold (file meta,
    repeating groups and the attributes that size the pixel data left out)."""
    from pydicom.config import settings
    from pydicom.datadict import DicomDictionary

    ds = read(data)
    planted: dict[int, str] = {}
    for n, (tag, entry) in enumerate(sorted(DicomDictionary.items())):
        vr = entry[0]
        if vr not in _PLANTED_VRS or tag >> 16 in (0x0000, 0x0002, 0xFFFE) or tag in ds or tag == 0x00280008:
            continue
        planted[tag] = _planted_value(vr, n)
        ds.add(DataElement(tag, vr, planted[tag]))
    mode = settings.writing_validation_mode
    settings.writing_validation_mode = 0  # IGNORE: the planted values need not be valid, only present
    try:
        return save(ds), planted
    finally:
        settings.writing_validation_mode = mode


class AllowListSweepTests(SimpleTestCase):
    """A value planted in every text attribute of the dictionary survives only where the IOD's allow-list keeps it."""

    def sweep(self, data: bytes, sop_class: str) -> tuple[int, list[str]]:
        from trials.uploads.dicom_allowlist import PERIMETRY_GROUP, allowed_for

        source, planted = plant_every_text_attribute(data)
        self.assertGreater(len(planted), 2000)
        clean = read(deidentify_dicom(source, options=options()).data)
        allowed = allowed_for(sop_class)
        survivors, outside = 0, []
        for elem in clean:
            tag = int(elem.tag)
            value = planted.get(tag)
            if value is None or elem.value is None:
                continue
            kept = [str(v) for v in elem.value] if elem.VM > 1 else [str(elem.value)]
            if value in kept:
                survivors += 1
                perimetry = sop_class == VISUAL_FIELD_STATIC and tag >> 16 == PERIMETRY_GROUP
                if tag not in allowed and not perimetry:
                    outside.append(elem.keyword or hex(tag))
        return survivors, outside

    def test_only_allow_listed_attributes_survive_in_a_photograph(self):
        survivors, outside = self.sweep(factories.ophthalmic_photograph(), OP_8_BIT)
        self.assertEqual(outside, [])
        self.assertGreater(survivors, 0)  # the sweep sees what survives: some allow-listed values are kept as sent

    def test_only_allow_listed_attributes_survive_in_a_perimetry_object(self):
        survivors, outside = self.sweep(factories.visual_field(vf_sensitivities()), VISUAL_FIELD_STATIC)
        self.assertEqual(outside, [])
        self.assertGreater(survivors, 0)

    def test_only_allow_listed_attributes_survive_in_an_oct_volume(self):
        survivors, outside = self.sweep(factories.oct_volume(), OCT)
        self.assertEqual(outside, [])

    def test_the_named_leaks_of_the_basic_profile_do_not_survive(self):
        ds = read(factories.ophthalmic_photograph())
        ds.ManufacturerModelName = "CAM owned by SMITHCLINIC"
        ds.add(DataElement(0x00401006, "SH", "ORD-77"))  # retired order numbers
        ds.add(DataElement(0x00401007, "SH", "ORD-78"))
        ds.add(DataElement(0x00402006, "SH", "ORD-79"))
        ds.add(DataElement(0x00402007, "SH", "ORD-80"))
        ds.DeviceID = "DEV-SMITH-1"
        ds.SecondaryCaptureDeviceID = "SCDEV-2"
        ds.AnatomicRegionSequence[0].CodeMeaning = "Reviewed by Dr JONES"
        data = deidentify_dicom(save(ds), options=options()).data
        for value in (b"SMITHCLINIC", b"ORD-7", b"ORD-80", b"DEV-SMITH", b"SCDEV", b"JONES"):
            self.assertNotIn(value, data)
        clean = read(data)
        self.assertEqual(clean.AnatomicRegionSequence[0].CodeMeaning, "Retina")  # SRT T-AA610 = SCT 5665001

    def test_a_short_name_part_inside_a_kept_code_refuses_the_file(self):
        ds = read(factories.ophthalmic_photograph())
        ds.PatientName = "Li^Wu"
        ds.AnatomicRegionSequence[0].CodeValue = "LI"  # a two-letter name part, as a whole word
        with self.assertRaises(UploadRejected) as ctx:
            deidentify_dicom(save(ds), options=options())
        self.assertEqual(ctx.exception.code, "deidentification_incomplete")

    def test_a_short_name_part_does_not_match_inside_a_word(self):
        ds = read(factories.ophthalmic_photograph())
        ds.PatientName = "Li^Wu"
        ds.AnatomicRegionSequence[0].CodeValue = "LIWUX1"  # the letters, but not as words
        deidentify_dicom(save(ds), options=options())  # accepted

    def test_a_patient_called_no_and_a_study_numbered_1_are_not_refused(self):
        # "No" is also BurnedInAnnotation's value and "1" every stack ID and series number: neither is a leak.
        ds = read(factories.oct_volume())
        ds.PatientName = "No^Li"
        ds.StudyID = "1"
        ds.SeriesNumber = "1"
        clean = read(deidentify_dicom(save(ds), options=options()).data)
        self.assertEqual(clean.BurnedInAnnotation, "NO")

    def test_a_bench_style_file_set_is_never_refused_by_the_word_search(self):
        for index in (1, 7, 100):
            ds = read(factories.ophthalmic_photograph())
            ds.PatientName = f"DOE^JANE^{index}"
            ds.StudyID = "1"
            deidentify_dicom(save(ds), options=options())


def _reencoded(data: bytes, syntax) -> bytes:
    """The same object written in another native transfer syntax (implicit VR, big endian)."""
    ds = read(data)
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


class SerialiserTests(SimpleTestCase):
    """The direct serialiser (``dicom_writer.write_file``) writes exactly what pydicom's ``dcmwrite`` writes, and
    hands the leak check every byte but the pixel data value."""

    def assert_writes_like_pydicom(self, data: bytes, label: str) -> None:
        for converted in (False, True):
            ds = read(data)
            if converted:  # every value decoded, as the de-identification walk leaves most of them
                for elem in ds.iterall():
                    _ = elem.value
            expected = io.BytesIO()
            ds.save_as(expected, enforce_file_format=True)
            written = io.BytesIO()
            parts = write_file(ds, written, _transfer_syntax(ds))
            with self.subTest(label, converted=converted):
                self.assertIsNotNone(parts)
                self.assertEqual(written.getvalue(), expected.getvalue())
                head, tail = parts
                value = written.getvalue()[len(head) : len(written.getvalue()) - len(tail)]
                if "PixelData" in ds:
                    self.assertEqual(written.getvalue(), head + value + tail)
                    self.assertGreater(len(value), 0)
                    self.assertFalse(value.startswith(b"\xe0\x7f\x10\x00"))  # the element's header is searched
                else:
                    self.assertEqual(value, b"")

    def test_inputs_and_outputs_of_every_object_type_are_written_byte_for_byte_as_pydicom_writes_them(self):
        objects = dict(ALL_OBJECTS)
        objects["jpeg"] = factories.jpeg_photograph
        objects["free text"] = factories.free_text_leaks_photograph
        objects["implicit VR"] = lambda: _reencoded(factories.ophthalmic_photograph(), "1.2.840.10008.1.2")
        objects["big endian"] = lambda: _reencoded(factories.ophthalmic_photograph(bits=16), "1.2.840.10008.1.2.2")
        for label, make in objects.items():
            data = make()
            if data[128:132] == b"DICM":  # a file without preamble and file meta cannot be written as it is
                self.assert_writes_like_pydicom(data, f"{label} (input)")
            out = deidentify_dicom(data, options=options(allow_missing_burned_in_annotation=True)).data
            self.assert_writes_like_pydicom(out, f"{label} (de-identified)")

    def test_text_in_other_character_sets_is_written_by_pydicom(self):
        for charset, text in (("ISO_IR 192", "Zürich Augenklinik"), ("ISO_IR 100", "Zürich"), ("ISO_IR 144", "Москва")):
            ds = read(factories.ophthalmic_photograph())
            ds.SpecificCharacterSet = charset
            ds.InstitutionName = text
            ds.ImageComments = text
            ds.AnatomicRegionSequence[0].CodeMeaning = text  # and inside a sequence item
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            self.assert_writes_like_pydicom(buffer.getvalue(), charset)

    def test_a_dataset_pydicom_would_reencode_is_left_to_pydicom(self):
        ds = read(factories.ophthalmic_photograph())
        ds.SpecificCharacterSet = "ISO_IR 192"  # read as ISO_IR 100: pydicom re-encodes every text value
        out = io.BytesIO()
        self.assertIsNone(write_file(ds, out, _transfer_syntax(ds)))
        self.assertEqual(out.getvalue(), b"")


class RawDecodingTests(SimpleTestCase):
    """Values read from the file's bytes (to spare converting elements) are the values pydicom decodes."""

    def tricky(self) -> bytes:
        ds = read(factories.ophthalmic_photograph())
        ds.add(DataElement(0x00100010, "PN", b"Li^Wu=LI^WU\\Doe^Jane \x00"))  # two names, groups, padding
        ds.add(DataElement(0x00081070, "PN", b"O'Neil^Ann^^Dr "))
        ds.add(DataElement(0x00100020, "LO", b" MRN 7\x00\\ab\x00"))
        ds.add(DataElement(0x00080050, "SH", b"\xe9t\xe9 "))  # Latin-1
        ds.add(DataElement(0x00080060, "CS", b"OP\\XC "))
        ds.add(DataElement(0x00080016, "UI", OP_8_BIT))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    def test_names_identifiers_and_code_strings_read_from_bytes_equal_the_decoded_values(self):
        from trials.uploads.dicom_elements import _text_values, _values
        from trials.uploads.dicom_leaks import _identifying_values

        raw, decoded = read(self.tricky()), read(self.tricky())
        for elem in decoded.iterall():
            _ = elem.value
        self.assertEqual(_identifying_values(raw), _identifying_values(decoded))
        self.assertIn(
            b"li", _identifying_values(raw).values + tuple(n.strip() for n in _identifying_values(raw).needles)
        )
        for tag, vr in ((0x00080060, "CS"), (0x00080016, "UI")):
            self.assertEqual(_values(raw, tag, vr), _text_values(decoded[tag]))
