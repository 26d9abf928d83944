"""The reader workstation (issue 11, items 3, 4 and 7): the viewer's image variants served under the read's
own URL, the visual field as a Humphrey printout, the OCT value, the data the page's JS works from, and the
AI-aided panel that shows only in the aided phase after the unaided read of the case is signed."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
from django.core.files.storage import default_storage
from django.template.loader import render_to_string
from django.test import SimpleTestCase, TestCase
from django.utils import timezone
from PIL import Image

from reading import services
from reading.imaging import clahe, render_variant
from reading.models import Read
from reading.vf_printout import grey_tone, probability_symbol, vf_printout
from tests.support.reading import ReadingWorld
from tests.support.storage import fetch
from trials.uploads.visual_field import BLIND_SPOT_POINTS, N_POINTS


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class ImagingTests(SimpleTestCase):
    def test_clahe_spreads_a_low_contrast_image_without_changing_its_shape(self):
        rng = np.random.default_rng(1)
        grey = (rng.random((120, 160)) * 40 + 100).astype(np.uint8)  # grey levels 100..140 only
        out = clahe(grey)
        self.assertEqual((out.shape, out.dtype), (grey.shape, np.uint8))
        self.assertGreater(out.std(), 2 * grey.std())
        self.assertGreater(int(out.max()) - int(out.min()), 100)  # 40 grey levels spread over more than 100

    def test_clahe_keeps_the_order_of_grey_levels_within_a_tile(self):
        ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
        out = clahe(ramp, tiles=1)
        self.assertTrue(np.all(np.diff(out[0].astype(int)) >= 0))

    def test_variants(self):
        buffer = io.BytesIO()
        Image.new("RGB", (60, 40), (200, 90, 30)).save(buffer, "PNG")
        data = buffer.getvalue()
        red_free = png(render_variant(data, "redfree"))
        self.assertEqual((red_free.mode, red_free.size), ("L", (60, 40)))
        self.assertEqual(red_free.getpixel((5, 5)), 90)  # the green channel
        enhanced = png(render_variant(data, "clahe"))
        self.assertEqual((enhanced.mode, enhanced.size), ("RGB", (60, 40)))
        self.assertEqual(png(render_variant(data, "original")).getpixel((1, 1)), (200, 90, 30))
        self.assertEqual(png(render_variant(data, "original", max_side=30)).size, (30, 20))
        with self.assertRaises(ValueError):
            render_variant(data, "sepia")


def field_result(eye="OD"):
    sens = [None if i + 1 in BLIND_SPOT_POINTS else 30.0 - (i % 7) for i in range(N_POINTS)]
    td = [None if v is None else -1.0 for v in sens]
    pd = [None if v is None else -0.4 for v in sens]
    tdp = [None if v is None else 1.0 for v in sens]
    pdp = list(tdp)
    tdp[0], tdp[1], tdp[2], tdp[3] = 0.05, 0.02, 0.01, 0.005
    pdp[18] = 0.005  # point 19: the leftmost of row 4 (x = -27, y = +3) in right-eye orientation
    return SimpleNamespace(
        eye=eye,
        sensitivities=sens,
        total_deviation=td,
        pattern_deviation=pd,
        total_deviation_probability=tdp,
        pattern_deviation_probability=pdp,
        mean_deviation=-1.234,
        pattern_standard_deviation=2.345,
        visual_field_index=97.0,
        glaucoma_hemifield_test="Within normal limits",
        indices_source={"md": "computed"},
        fixation_loss_percent=7.0,
        false_positive_percent=3.0,
        false_negative_percent=21.0,
        reliable=False,
        reliability_rule="Li et al. 2018",
        reliability_reasons=["false negatives 21% (limit 20%)"],
    )


class VisualFieldPrintoutTests(SimpleTestCase):
    def test_points_symbols_and_greyscale(self):
        p = vf_printout(field_result())
        self.assertEqual(len(p["points"]), N_POINTS)
        blind = [pt["number"] for pt in p["points"] if pt["blind_spot"]]
        self.assertEqual(blind, list(BLIND_SPOT_POINTS))
        first = p["points"][:4]
        self.assertEqual([pt["tdp"] for pt in first], ["p5", "p2", "p1", "p05"])
        self.assertEqual(p["points"][4]["tdp"], "ns")
        self.assertEqual((p["points"][0]["sensitivity"], p["points"][0]["td"], p["points"][0]["pd"]), ("30", "-1", "0"))
        self.assertEqual((grey_tone(-2), grey_tone(0), grey_tone(35), grey_tone(50)), (0, 0, 255, 255))
        self.assertLess(grey_tone(12), grey_tone(27))
        self.assertEqual(probability_symbol(None), "")

    def test_a_left_eye_is_shown_mirrored_as_the_perimeter_prints_it(self):
        od = {pt["number"]: pt for pt in vf_printout(field_result("OD"))["points"]}
        os_ = {pt["number"]: pt for pt in vf_printout(field_result("OS"))["points"]}
        self.assertLess(od[19]["cx"], od[27]["cx"])  # right eye: point 19 at the left edge
        self.assertGreater(os_[19]["cx"], os_[27]["cx"])  # left eye: mirrored, blind spot on the left
        self.assertLess(os_[26]["cx"], os_[24]["cx"])
        self.assertEqual(od[19]["cy"], os_[19]["cy"])

    def test_the_printout_template_shows_plots_indices_and_reliability(self):
        html = render_to_string("reading/includes/vf_printout.html", {"p": vf_printout(field_result())})
        for testid in ("vf-greyscale", "vf-threshold", "vf-td", "vf-pd", "vf-tdp", "vf-pdp", "vf-indices"):
            self.assertIn(f'data-testid="{testid}"', html)
        for text in ("-1.23 dB", "2.35 dB", "97%", "Within normal limits", "7%", "3%", "21%", "unreliable"):
            self.assertIn(text, html)
        self.assertEqual(html.count('class="vf-sym vf-p05"'), 2 + 1)  # tdp point 4, pdp point 19, the legend
        self.assertIn("false negatives 21% (limit 20%)", html)
        self.assertIn('class="vf-num">30</text>', html)  # threshold of point 1
        self.assertEqual(html.count('class="vf-num">-1</text>'), N_POINTS - 2)  # total deviation, blind spot left out
        self.assertIn('fill="rgb(219,219,219)"><title>30 dB</title>', html)  # greyscale: 30-34 dB


def workstation_data(response) -> dict:
    match = re.search(
        r'<script id="workstation-data" type="application/json">(.*?)</script>', response.content.decode()
    )
    return json.loads(match.group(1))


class ReadPageViewerTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld(images=True)
        self.addCleanup(self.w.delete_files)
        self.read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.file = self.w.files[self.read.case_id]
        self.client.force_login(self.w.reader)

    def test_the_page_hands_the_viewer_the_images_marks_and_api_addresses(self):
        services.mark_add(
            reader=self.w.reader, read=self.read, case_file=self.file, kind="haemorrhage", shape="point", x=10, y=20
        )
        response = self.client.get(f"/reading/reads/{self.read.pk}/")
        self.assertContains(response, 'data-testid="viewer"')
        self.assertContains(response, "openseadragon.min.js")
        self.assertContains(response, "js/reading-viewer.js")
        self.assertContains(response, 'data-testid="shortcut-help"')
        self.assertContains(response, 'data-testid="mark-tools"')
        # The keys of each question are shown with it: a grade by its own digit, other choices by number.
        self.assertContains(response, "<kbd>2</kbd> Moderate non-proliferative")  # the digit once
        self.assertContains(response, "<kbd>1</kbd> Yes")
        self.assertNotContains(response, 'data-testid="heatmap-tools"')
        data = workstation_data(response)
        image = data["images"][0]
        self.assertEqual(
            (image["id"], image["width"], image["height"], image["markable"]), (str(self.file.pk), 400, 300, True)
        )
        base = f"/reading/reads/{self.read.pk}/files/{self.file.pk}/"
        self.assertEqual(image["variants"], {v: f"{base}{v}/" for v in ("full", "redfree", "clahe")})
        self.assertEqual(image["overlays"], [])
        self.assertEqual([(m["kind"], m["x"], m["y"]) for m in data["marks"]], [("haemorrhage", 10.0, 20.0)])
        self.assertEqual(data["draft_url"], f"/api/v1/reading/reads/{self.read.pk}/draft/")
        self.assertEqual(data["marks_url"], f"/api/v1/reading/reads/{self.read.pk}/marks/")
        api = self.client.get(f"/api/v1/reading/reads/{self.read.pk}/").json()  # the same addresses in the API
        self.assertEqual(api["files"][0]["viewer_urls"], image["variants"])
        # No inline script code: the data travels as JSON, the code in static/js.
        scripts = re.findall(r"<script(?![^>]*(?:src=|application/json))[^>]*>", response.content.decode())
        self.assertEqual(scripts, [])

    def test_full_resolution_red_free_and_clahe_under_the_reads_own_url(self):
        base = f"/reading/reads/{self.read.pk}/files/{self.file.pk}/"
        with default_storage.open(self.file.content.name, "rb") as handle:
            stored = handle.read()
        self.assertEqual(fetch(self.client.get(base + "full/")), stored)  # the stored photograph itself
        original = png(stored).convert("RGB")
        self.assertEqual(original.size, (400, 300))
        red_free = self.client.get(base + "redfree/")
        self.assertEqual(red_free["Content-Type"], "image/png")
        image = png(red_free.content)
        self.assertEqual((image.mode, image.size), ("L", (400, 300)))
        self.assertEqual(np.asarray(image).tolist(), np.asarray(original)[:, :, 1].tolist())
        enhanced = png(self.client.get(base + "clahe/").content)
        self.assertEqual((enhanced.mode, enhanced.size), ("RGB", (400, 300)))
        self.assertNotEqual(np.asarray(enhanced).tolist(), np.asarray(original).tolist())
        self.assertEqual(self.client.get(base + "sepia/").status_code, 404)

    def test_a_dicom_photograph_opens_at_its_full_resolution_not_its_preview(self):
        from tests.support import dicom_factories
        from trials.file_services import case_file_upload
        from trials.models import Case
        from trials.services import case_set_status

        case = Case.objects.get(pk=self.read.case_id)
        case_set_status(
            actor=self.w.coord1 if case.subject.site.hospital == self.w.h1 else self.w.coord2,
            case=case,
            status="open",
            reason="a DICOM photograph too",
        )
        coordinator = self.w.coord1 if case.subject.site.hospital == self.w.h1 else self.w.coord2
        import io

        from PIL import Image, ImageFilter
        from pydicom import dcmread

        from tests.support.image_factories import fundus_pixels

        # Smoothed texture: Tesseract spends over a minute on the factory's pixel noise at this size, under a second
        # on this (as on a real photograph).
        pixels = np.asarray(Image.fromarray(fundus_pixels(1200, 1600)).filter(ImageFilter.BoxBlur(6)))
        ds = dcmread(
            io.BytesIO(
                dicom_factories.ophthalmic_photograph(rows=1200, columns=1600, sop_instance_uid=None, pixels=pixels)
            )
        )
        ds.ImageLaterality = ds.Laterality = "L" if case.laterality == "OS" else "R"  # the case's eye
        buffer = io.BytesIO()
        ds.save_as(buffer)
        dicom = case_file_upload(actor=coordinator, case=case, data=buffer.getvalue()).case_file
        self.addCleanup(
            lambda: [
                default_storage.delete(n) for n in (dicom.content.name, dicom.preview.name, dicom.thumbnail.name) if n
            ]
        )
        base = f"/reading/reads/{self.read.pk}/files/{dicom.pk}/"
        full = png(self.client.get(base + "full/").content)
        self.assertEqual(full.size, (1600, 1200))  # the preview is at most 1024 px
        with default_storage.open(dicom.preview.name, "rb") as handle:
            self.assertLessEqual(max(png(handle.read()).size), 1024)
        self.assertEqual(png(self.client.get(base + "redfree/").content).size, (1600, 1200))

    def test_nobody_else_gets_the_variants(self):
        url = f"/reading/reads/{self.read.pk}/files/{self.file.pk}/clahe/"
        for user in (self.w.reader2, self.w.coord1, self.w.manager):
            self.client.force_login(user)
            self.assertIn(self.client.get(url).status_code, (403, 404))
        other = self.w.files[next(pk for pk in self.w.files if pk != self.read.case_id)]
        self.client.force_login(self.w.reader)
        self.assertEqual(self.client.get(f"/reading/reads/{self.read.pk}/files/{other.pk}/full/").status_code, 404)

    def test_oct_value_and_signed_read_offers_the_next_case(self):
        type(self.read.case).objects.filter(pk=self.read.case_id).update(oct_rnfl_thickness_um=87.5)
        page = self.client.get(f"/reading/reads/{self.read.pk}/")
        self.assertContains(page, 'data-testid="oct-values"')
        self.assertContains(page, "87.5 µm")
        self.w.signed_read(self.w.reader)
        page = self.client.get(f"/reading/reads/{self.read.pk}/")
        self.assertContains(page, 'data-testid="next-case"')
        self.assertNotContains(page, 'data-testid="mark-tools"')
        self.assertTrue(workstation_data(page)["signed"])


class VisualFieldOnReadPageTests(TestCase):
    def test_the_reader_sees_the_field_as_a_printout(self):
        from tests.support.uploads import vf_csv
        from trials.file_services import case_file_upload
        from trials.models import Trial
        from trials.services import case_set_status

        w = ReadingWorld(reading=False)
        Trial.objects.filter(pk=w.trial.pk).update(modalities=["fundus", "visual_field"])
        w.trial.refresh_from_db()
        (case,) = w.add_cases(1, complete=False)
        case_file_upload(actor=w.coord1, case=case, data=vf_csv("OD", fn=2))
        case_set_status(actor=w.coord1, case=case, status="complete")
        w.start_reading()
        read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        while read.case_id != case.pk:
            w.signed_read(w.reader)
            read = services.read_next(reader=w.reader, trial=w.trial, phase="unaided")
        self.client.force_login(w.reader)
        page = self.client.get(f"/reading/reads/{read.pk}/")
        self.assertContains(page, 'data-testid="vf-printout"')
        self.assertContains(page, 'data-testid="vf-pdp"')
        vf = case.visual_fields.get()
        self.assertContains(page, f"{vf.mean_deviation:.2f} dB")
        self.assertEqual(workstation_data(page)["images"], [])  # a visual field opens as a printout, not a photo
        for f in case.files.all():
            for name in (f.content.name, f.preview.name, f.thumbnail.name, vf.pd_plot.name):
                if name:
                    default_storage.delete(name)


class AidedPanelTests(TestCase):
    def setUp(self):
        from diagnosis.models import InferenceJob, Prediction
        from tests.support.registry import register_small_models

        self.w = ReadingWorld(aided=True, images=True)
        self.addCleanup(self.w.delete_files)
        self.unaided = self.w.signed_read(self.w.reader)
        model, _ = register_small_models()
        job = InferenceJob.objects.create(case=self.unaided.case, model_version=model, status="succeeded")
        self.prediction = Prediction.objects.create(
            job=job,
            case=self.unaided.case,
            model_version=model,
            runtime_ms=1.0,
            attention_overlay=self.w.files[self.unaided.case_id].thumbnail.name,
            class_probabilities=[0.05, 0.1, 0.6, 0.2, 0.05],
            grade=2,
            referable_probability=0.8765432,
            crop_boxes=[[40, 30, 140, 130], [5, 5, 5, 9]],
            details={"image_size": [400, 300]},
        )
        Read.objects.filter(pk=self.unaided.pk).update(signed_at=timezone.now() - timedelta(days=29))
        self.aided = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="aided")
        self.client.force_login(self.w.reader)

    def test_the_aided_read_shows_probabilities_heatmap_and_glaucoma_evidence(self):
        page = self.client.get(f"/reading/reads/{self.aided.pk}/")
        self.assertContains(page, 'data-testid="ai-grade-probabilities"')
        self.assertContains(page, "60.0%")
        self.assertContains(page, "0.8765432")
        self.assertContains(page, 'data-testid="heatmap-tools"')
        overlay = f"/reading/reads/{self.aided.pk}/ai/{self.prediction.pk}/overlay/"
        (heatmap,) = workstation_data(page)["images"][0]["overlays"]
        self.assertEqual(heatmap["url"], overlay)
        # The zoomed regions in viewer units (the photograph's width is 1); an empty box is left out.
        self.assertEqual(heatmap["regions"], [[0.1, 0.075, 0.25, 0.25]])
        self.assertIn(self.client.get(overlay).status_code, (200, 302))  # streamed, or S3's presigned redirect

    def test_no_ai_output_until_the_unaided_read_of_the_case_is_signed(self):
        # The aided read is linked to an unaided read that is no longer signed (say, amended back by a manager's
        # reset in a future change): the AI output disappears from the page, the API and the overlay URL.
        Read.objects.filter(pk=self.unaided.pk).update(
            status="draft", signed_at=None, signature_name="", signature_meaning=""
        )
        page = self.client.get(f"/reading/reads/{self.aided.pk}/")
        self.assertNotContains(page, "0.8765432")
        self.assertNotContains(page, 'data-testid="heatmap-tools"')
        self.assertEqual(workstation_data(page)["images"][0]["overlays"], [])
        overlay = f"/reading/reads/{self.aided.pk}/ai/{self.prediction.pk}/overlay/"
        self.assertEqual(self.client.get(overlay).status_code, 404)
        self.assertEqual(self.client.get(f"/api/v1/reading/reads/{self.aided.pk}/").json()["ai_outputs"], [])

    def test_the_unaided_read_never_shows_the_ai(self):
        page = self.client.get(f"/reading/reads/{self.unaided.pk}/")
        self.assertNotContains(page, "0.8765432")
        self.assertNotContains(page, 'data-testid="ai-outputs"')
        overlay = f"/reading/reads/{self.unaided.pk}/ai/{self.prediction.pk}/overlay/"
        self.assertEqual(self.client.get(overlay).status_code, 404)
