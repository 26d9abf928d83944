"""Every photograph of a case is read (one prediction per file, naming it), the case's result combines them by
its model's stated rule, and the case page says it in words: ICDR wording, percentages, the call at the model
version's operating point, and engineering detail only for the trial's managers."""

from __future__ import annotations

import re
from unittest import mock

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.test import SimpleTestCase, TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from diagnosis.calibration import fusion_calibration_fit
from diagnosis.models import DEFAULT_OPERATING_THRESHOLD, InferenceJob, JobStatus, Prediction
from diagnosis.registry import model_register, validate_model_card
from diagnosis.results import Call, grade_label, model_results, percent
from diagnosis.selectors import case_inference_context, case_photographs, fused_glaucoma, model_input_files
from diagnosis.services import inference_run
from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from tests.support import image_factories
from tests.support.inference import InferenceFixture
from tests.support.registry import CARD, checkpoint_bytes, register_fundus_glaucoma_model, small_dr_network
from trials.file_services import case_file_upload
from trials.models import CaseFile
from trials.services import case_set_status, reference_standard_record


def complete(case, actor):
    with mock.patch("diagnosis.tasks.infer_case_task.apply_async"):
        case_set_status(actor=actor, case=case, status="complete")


class EveryPhotographIsReadTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        self.second = case_file_upload(actor=self.w.coord1, case=self.case, data=image_factories.plain_png(640, 480))
        self.photos = list(CaseFile.objects.filter(case=self.case, modality="fundus").order_by("created_at"))

    def run_dr(self):
        complete(self.case, self.w.coord1)
        job = InferenceJob.objects.get(case=self.case, model_version=self.dr)
        return job, inference_run(job_pk=str(job.pk), task_id="t")

    def test_one_job_reads_every_photograph_and_each_prediction_names_its_file(self):
        self.assertEqual(len(self.photos), 2)
        job, counts = self.run_dr()
        self.assertEqual(counts["succeeded"], 1)
        predictions = list(Prediction.objects.filter(job=job).order_by("case_file__created_at"))
        self.assertEqual([p.case_file_id for p in predictions], [f.pk for f in self.photos])
        self.assertEqual([p.details["image_size"] for p in predictions], [[400, 300], [640, 480]])
        self.assertTrue(all(p.attention_overlay for p in predictions))
        event = AuditEvent.objects.get(action="inference_job.succeed", object_id=str(job.pk))
        self.assertEqual(sorted(event.changes["predictions"][1]), sorted(str(p.pk) for p in predictions))
        # The visual-field model reads the visual field, and says so.
        vf_job = InferenceJob.objects.get(case=self.case, model_version=self.vf)
        inference_run(job_pk=str(vf_job.pk), task_id="t")
        self.assertEqual(Prediction.objects.get(job=vf_job).case_file.modality, "visual_field")

    def test_an_unreadable_photograph_fails_the_whole_job_naming_it_and_writes_nothing(self):
        default_storage.delete(self.photos[1].content.name)
        with self.assertLogs("diagnosis.services", "WARNING"):
            job, counts = self.run_dr()
        job.refresh_from_db()
        self.assertEqual((counts["failed"], job.status), (1, JobStatus.FAILED))
        self.assertIn("(in photograph 2 of 2)", job.error)
        self.assertNotIn("photograph 1 of 2", job.error)
        self.assertFalse(Prediction.objects.filter(job=job).exists())

    def test_a_superseded_photograph_is_not_read_and_the_selection_is_one_function(self):
        from trials.file_services import case_file_supersede

        case_file_supersede(
            actor=self.w.coord1, case_file=self.photos[0], replacement=self.photos[1], reason="a sharper photograph"
        )
        self.assertEqual(list(case_photographs(self.case)), [self.photos[1]])
        self.assertNotIn(self.photos[0], list(model_input_files(self.case)))
        job, _ = self.run_dr()
        self.assertEqual([p.case_file_id for p in Prediction.objects.filter(job=job)], [self.photos[1].pk])

    def test_the_page_shows_each_file_and_how_the_case_result_combines_them(self):
        self.run_dr()
        self.client.force_login(self.w.coord1)
        page = self.client.get(reverse("trials:case-detail", args=[self.case.pk]))
        results = page.context["model_results"]
        dr = next(r for r in results if r.model == self.dr)
        self.assertEqual(len(dr.files), 2)
        html = page.content.decode()
        self.assertIn(f"Photograph 1 of 2 · 400×300 · {self.photos[0].sha256[:12]}", html)
        self.assertIn(f"Photograph 2 of 2 · 640×480 · {self.photos[1].sha256[:12]}", html)
        self.assertIn("the case takes the highest ICDR grade and the highest referable-DR probability", html)
        self.assertEqual(html.count('data-testid="overlay-viewer"'), 2)
        worst = max(Prediction.objects.filter(model_version=self.dr), key=lambda p: p.grade)
        self.assertEqual(dr.grade, worst.grade)

    def test_the_api_names_the_file_each_prediction_read(self):
        self.run_dr()
        api = APIClient()
        api.force_authenticate(self.w.coord1)
        body = api.get(reverse("api:diagnosis:case-prediction-list", args=[self.case.pk])).json()
        rows = body["results"] if isinstance(body, dict) else body
        self.assertEqual(sorted(r["case_file"] for r in rows), sorted(str(f.pk) for f in self.photos))


def prediction(model, case, case_file=None, **fields):
    job = InferenceJob.objects.filter(case=case, model_version=model).first()
    if job is None:
        job = InferenceJob.objects.create(case=case, model_version=model, status=JobStatus.SUCCEEDED)
    return Prediction.objects.create(
        job=job,
        case=case,
        case_file=case_file,
        model_version=model,
        runtime_ms=12.5,
        **{
            "details": {"device": "cuda:0"},
            **fields,
        },
    )


class CombinationTests(InferenceFixture, TestCase):
    """The case's result from predictions on several photographs (no network needed)."""

    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        self.second = case_file_upload(actor=self.w.coord1, case=self.case, data=image_factories.plain_png(640, 480))
        self.photos = list(CaseFile.objects.filter(case=self.case, modality="fundus").order_by("created_at"))

    def dr_pair(self, first, second):
        probabilities = {
            1: [0.1, 0.6, 0.2, 0.05, 0.05],
            3: [0.05, 0.05, 0.2, 0.6, 0.1],
            0: [0.9, 0.05, 0.03, 0.01, 0.01],
        }
        return [
            prediction(
                self.dr,
                self.case,
                photo,
                grade=grade,
                referable_probability=ref,
                class_probabilities=probabilities[grade],
            )
            for photo, (grade, ref) in zip(self.photos, (first, second), strict=True)
        ]

    def test_the_worst_photograph_decides_the_grade_and_the_referable_call(self):
        self.dr_pair((1, 0.30), (3, 0.70))
        (result,) = model_results(list(Prediction.objects.select_related("model_version", "case_file")))
        self.assertEqual((result.grade, result.grade_label), (3, "3 · Severe NPDR"))
        self.assertTrue(result.grade_from.startswith("Photograph 2 of 2"))
        self.assertEqual((result.call.label, result.call.percent), ("Referable", "70%"))
        self.assertTrue(result.call_from.startswith("Photograph 2 of 2"))
        self.assertEqual([f.grade_label for f in result.files], ["1 · Mild NPDR", "3 · Severe NPDR"])
        self.assertEqual([b.percent for b in result.files[0].bars], ["10%", "60%", "20%", "5%", "5%"])
        self.assertIn("worst photograph decides", result.combination)

    def test_the_call_follows_the_model_versions_operating_point(self):
        self.dr_pair((0, 0.02), (1, 0.62))
        self.dr.operating_threshold = 0.7
        self.dr.save(update_fields=["operating_threshold"])
        (result,) = model_results(list(Prediction.objects.select_related("model_version", "case_file")))
        self.assertEqual((result.call.label, result.call.positive), ("Not referable", False))
        self.assertEqual(result.call.threshold_percent, "70%")
        self.assertEqual([f.call.label for f in result.files], ["Not referable", "Not referable"])

    def test_fusion_and_its_calibration_take_the_most_suspicious_photograph(self):
        fg = register_fundus_glaucoma_model()
        prediction(fg, self.case, self.photos[0], glaucoma_probability=0.2)
        prediction(fg, self.case, self.photos[1], glaucoma_probability=0.8)
        predictions = list(Prediction.objects.select_related("model_version"))
        fused = fused_glaucoma(predictions)
        self.assertEqual(fused["components"][0]["value"], "80%")
        (result,) = model_results(predictions)
        self.assertEqual((result.call.label, result.call.percent), ("Glaucoma suspected", "80%"))
        reference_standard_record(actor=self.w.manager, case=self.case, source="imported", glaucoma="yes")
        with mock.patch("diagnosis.calibration.fit_fusion_calibration", side_effect=ValueError("stop")) as fit:
            with self.assertRaisesMessage(ApplicationError, "stop"):
                fusion_calibration_fit(actor=self.w.manager, trial=self.w.trial, fundus_model=fg)
        evidence = fit.call_args.args[0]
        self.assertEqual([e.fundus_probability for e in evidence], [0.8])

    def test_a_prediction_made_before_files_were_recorded_still_shows(self):
        prediction(self.dr, self.case, None, grade=2, referable_probability=0.55, class_probabilities=[0.1] * 5)
        (result,) = model_results(list(Prediction.objects.select_related("model_version", "case_file")))
        self.assertEqual(result.files[0].file_label, "File not recorded (predicted before files were recorded)")
        self.assertFalse(result.files[0].viewable)


class WordingTests(SimpleTestCase):
    def test_icdr_wording_of_each_grade(self):
        self.assertEqual(
            [grade_label(g) for g in range(5)],
            ["0 · No apparent DR", "1 · Mild NPDR", "2 · Moderate NPDR", "3 · Severe NPDR", "4 · PDR"],
        )
        self.assertEqual(grade_label(None), "")

    def test_percentages_never_round_to_certainty_or_across_the_operating_point(self):
        self.assertEqual([percent(p) for p in (0.0, 0.001, 0.456, 0.996, 1.0)], ["0%", "<1%", "46%", ">99%", "100%"])
        below = Call(False, "Not referable", "referable-DR probability", 0.4989, 0.5)
        self.assertEqual(below.percent, "49.9%")
        self.assertEqual(Call(True, "Referable", "x", 0.5, 0.5).percent, "50%")


class OperatingPointRegistrationTests(TestCase):
    def test_the_cards_operating_threshold_is_stored_and_a_default_is_documented(self):
        weights = checkpoint_bytes(small_dr_network())
        stated = model_register(
            actor=None, name="dr-op", version="1", weights=weights, model_card={**CARD, "operating_threshold": 0.35}
        )
        self.assertEqual(stated.operating_threshold, 0.35)
        plain = model_register(actor=None, name="dr-op", version="2", weights=weights, model_card=CARD)
        self.assertEqual(plain.operating_threshold, DEFAULT_OPERATING_THRESHOLD)
        self.assertEqual(DEFAULT_OPERATING_THRESHOLD, 0.5)
        for bad in (1.5, 0, "0.3", True):
            with self.subTest(bad=bad), self.assertRaisesMessage(ValidationError, "operating_threshold must be"):
                validate_model_card({**CARD, "operating_threshold": bad})


class EngineeringDetailTests(InferenceFixture, TestCase):
    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)
        photo = CaseFile.objects.get(case=self.case, modality="fundus")
        prediction(
            self.dr,
            self.case,
            photo,
            grade=2,
            referable_probability=0.5123,
            class_probabilities=[0.2, 0.2, 0.3, 0.2, 0.1],
        )
        self.url = reverse("trials:case-detail", args=[self.case.pk])

    def ai_section(self, user) -> str:
        self.client.force_login(user)
        html = self.client.get(self.url).content.decode()
        return html[
            html.index('data-testid="inference"') : html.index("</section>", html.index('data-testid="inference"'))
        ]

    def test_a_coordinator_reads_words_and_percentages_and_no_engineering_detail(self):
        html = self.ai_section(self.w.coord1)
        self.assertIn("2 · Moderate NPDR", html)
        self.assertIn('data-testid="referable-call">Referable<', html)
        self.assertIn('operating point of <span data-testid="operating-point">50%</span>', html)
        self.assertIn("Referable-DR probability (grade 2 or worse) 51%;", html)
        self.assertIsNone(re.search(r"\d\.\d{3}", re.sub(r'value="[^"]*"', "", html)), "a three-decimal number")
        self.assertNotIn("Runtime", html)
        self.assertNotIn("cuda:0", html)
        self.assertNotIn('data-testid="engineering-detail"', html)
        self.assertNotIn('data-testid="job-engineering"', html)

    def test_a_manager_sees_runtime_device_and_job_ids(self):
        html = self.ai_section(self.w.manager)
        job = InferenceJob.objects.get(case=self.case)
        self.assertIn('data-testid="engineering-detail"', html)
        self.assertIn("13 ms on cuda:0", html)  # 12.5 ms, rounded
        self.assertIn(str(job.pk), html)

    def test_a_monitor_does_not_see_engineering_detail(self):
        context = case_inference_context(user=self.w.monitor, case=self.case)
        self.assertFalse(context["shows_engineering"])
        self.assertTrue(case_inference_context(user=self.w.manager, case=self.case)["shows_engineering"])

    def test_the_api_gives_runtime_and_device_to_managers_only(self):
        url = reverse("api:diagnosis:case-prediction-list", args=[self.case.pk])
        for user, runtime, details in ((self.w.coord1, None, None), (self.w.manager, 12.5, {"device": "cuda:0"})):
            with self.subTest(user=user.email):
                api = APIClient()
                api.force_authenticate(user)
                body = api.get(url).json()
                row = (body["results"] if isinstance(body, dict) else body)[0]
                self.assertEqual((row["runtime_ms"], row["details"]), (runtime, details))
                self.assertEqual(row["grade"], 2)  # the prediction itself for both
