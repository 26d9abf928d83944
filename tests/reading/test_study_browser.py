"""A fully crossed two-phase reader study, end to end in headless Chromium on the demo trial (issue 11, "Done
when"): the demo's people and trial are seeded (its seven complete cases, real photographs through the upload
pipeline), the manager's set-up is the demo study's (three readers in two groups, unaided then AI-aided after a
28-day washout, a panel member), and the AI has a prediction on every case.

In the browser, reader R01 reads and signs every unaided case with the keyboard; the AI-aided phase refuses them
during the washout with the date it opens; the reading clock (``reading.clock.now``, patched, which the live
server's thread sees too) then moves past the washout and R01 reads every case again with the AI beside it; the
panel member adjudicates the case the three readers graded three ways; the manager locks the reference standard
with a signature; the evaluation dashboard shows the unaided-vs-aided MRMC comparison of the study. The two other
readers read through the reading services (as ``demo.reader_study`` does), with the demo's drawn answers."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.core.files.storage import default_storage
from django.test import tag
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from platform_core.accounts.models import User
from tests.reading import test_workstation_browser as workstation
from tests.support import BrowserTestCase
from tests.support.storage import stored_names

TIE_PHOTO = "01_dr.jpg"  # graded 2, 3 and 4 by the three readers: no majority, so the panel decides
TIE_GRADES = {"reader2@visus.example": "2", "reader3@visus.example": "4"}


def truth_keys(truth: tuple[int, str]) -> dict[str, str]:
    """The keys R01 answers a case with: the truth of its demo photograph (grade 3 or 0, glaucoma yes or no)."""
    grade, glaucoma = truth
    return {
        "icdr_grade": str(grade),
        "referable_dr": "y" if grade >= 2 else "n",
        "dme": "n",
        "gradable": "y",
        "glaucoma": "y" if glaucoma == "yes" else "n",
    }


@tag("browser")
class DemoStudyInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    keys = workstation.WorkstationInBrowserTests.keys
    keys_and_load = workstation.WorkstationInBrowserTests.keys_and_load

    def setUp(self):
        before = stored_names()
        self.addCleanup(lambda: [default_storage.delete(n) for n in stored_names() - before])

    # --- set-up through the services (what seed_demo and the manager's pages do) -------------------------
    def seed(self):
        from demo.reader_study import ADJUDICATOR, READERS, demo_photos
        from demo.seeding import seed_people, seed_trial
        from reading import services
        from trials.models import Trial
        from trials.services import trial_transition

        seed_people()
        seed_trial()
        manager = User.objects.get(email="manager@visus.example")
        trial = trial_transition(actor=manager, trial=Trial.objects.get(slug="demo-dr"), status="reading")
        setup = services.reading_setup_set(
            actor=manager, trial=trial, crossing="fully_crossed", aided_phase=True, washout_days=28
        )
        for email, group, _ in READERS:
            for phase in setup.phases:
                services.reader_assign(
                    actor=manager, trial=trial, reader=User.objects.get(email=email), phase=phase, group=group
                )
        services.panel_member_add(actor=manager, trial=trial, user=User.objects.get(email=ADJUDICATOR))
        self.predict(trial)
        return trial, demo_photos(trial)

    def predict(self, trial):
        """A prediction of the registered DR network on every complete case (its heatmap: the photograph's
        thumbnail), as the GPU workers would leave it."""
        from diagnosis.models import InferenceJob, Prediction
        from tests.support.registry import register_small_models
        from trials.models import Case
        from trials.selectors import active_case_files

        model, _ = register_small_models()
        for n, case in enumerate(Case.objects.filter(subject__trial=trial, status="complete").order_by("pk")):
            photo = active_case_files(case).get(modality="fundus")
            job = InferenceJob.objects.create(case=case, model_version=model, status="succeeded")
            Prediction.objects.create(
                job=job,
                case=case,
                case_file=photo,
                model_version=model,
                runtime_ms=1.0,
                attention_overlay=photo.thumbnail.name,
                class_probabilities=[0.2, 0.2, 0.2, 0.2, 0.2],
                grade=2,
                referable_probability=round(0.1 + 0.1 * n, 2),
                crop_boxes=[],
                details={"image_size": [photo.width, photo.height]},
            )

    def service_reads(self, trial, photos, phase):
        """R02 and R03 read every case of the phase through the services, with the demo study's drawn answers
        (the tie case graded 2 and 4)."""
        from demo.reader_study import AIDED_GAIN, READERS, draw_read, read_rng, truth_of
        from demo.seeding import DEMO_PASSWORD
        from reading import services

        for email, _, skill in READERS[1:]:
            reader = User.objects.get(email=email)
            while (read := services.read_next(reader=reader, trial=trial, phase=phase)) is not None:
                photo = photos[read.case_id]
                rng = read_rng(email, photo, phase)
                answers, confidences = draw_read(rng, truth_of(photo), skill + (AIDED_GAIN if phase == "aided" else 0))
                if photo == TIE_PHOTO:
                    answers.update(icdr_grade=TIE_GRADES[email], referable_dr="yes")
                read = services.read_draft_save(
                    reader=reader, read=read, version=read.version, answers=answers, confidences=confidences
                )
                services.read_sign(
                    read=read,
                    signer=reader,
                    password=DEMO_PASSWORD,
                    meaning=services.MEANING_READ,
                    version=read.version,
                )

    # --- the reader's keyboard ---------------------------------------------------------------------------
    def read_with_the_keyboard(self, photos, *, aided):
        """Answer and sign the open read with keys only: per question (in the page's order) its confidence with
        Alt + digit, then its answer (which moves on); the overall confidence by Alt + 7, then J."""
        from demo.reader_study import truth_of
        from reading.models import Read

        b = self.browser
        self.wait_for("[data-read-form]", timeout=20)
        read = Read.objects.get(pk=b.current_url.rstrip("/").rsplit("/", 1)[-1])
        self.assertEqual(read.phase, "aided" if aided else "unaided")
        if aided:  # the AI beside the photograph, and its heatmap over it
            self.wait_for("[data-testid=ai-outputs]")
            self.assertTrue(b.find_element(By.CSS_SELECTOR, "[data-testid=ai-referable]").text)
            self.wait(20).until(
                lambda d: (
                    d.find_element(By.CSS_SELECTOR, "[data-testid=viewer]").get_attribute("data-heatmap") == "shown"
                ),
                message="no AI heatmap over the photograph",
            )
        else:
            self.assertEqual(b.find_elements(By.CSS_SELECTOR, "[data-testid=ai-outputs]"), [])
        answers = truth_keys(truth_of(photos[read.case_id]))
        if photos[read.case_id] == TIE_PHOTO:
            answers["icdr_grade"] = "3"
        questions = b.execute_script(
            "return Array.from(document.querySelectorAll('[data-read-form] [data-question]')).map(function (q) {"
            " return [q.getAttribute('data-question'), q.getAttribute('data-kind')]; });"
        )
        for key, kind in questions:
            if kind == "integer":
                self.keys((Keys.ALT, "7"), "j")
            else:
                self.keys((Keys.ALT, "8"), answers[key])
        self.wait(10).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "[data-autosave-status]").get_attribute("data-state") == "saved",
            message="the draft was not autosaved",
        )
        self.keys("s")
        if b.switch_to.active_element.get_attribute("name") == "username":  # the session's first signature
            self.keys("reader1@visus.example", Keys.ENTER)
        self.keys_and_load("visus-demo-2026", Keys.ENTER)
        read.refresh_from_db()
        self.assertEqual(read.status, "signed")
        self.assertEqual(read.answers["icdr_grade"], answers["icdr_grade"])

    def read_phase_in_the_browser(self, photos, phase):
        b = self.browser
        b.get(f"{self.live_server_url}/reading/")
        self.click_and_load(b.find_element(By.CSS_SELECTOR, f"[data-testid=next-{phase}]"))
        n = 0
        while "/reading/reads/" in b.current_url:  # each signature opens the next case, the last the worklist
            self.read_with_the_keyboard(photos, aided=phase == "aided")
            n += 1
        return n

    def test_a_fully_crossed_two_phase_study_runs_end_to_end_on_the_demo_trial(self):
        from reading import services
        from reading.models import Adjudication, Read, ReadingSetup
        from trials.models import Case, ReferenceStandard

        trial, photos = self.seed()
        self.assertEqual(len(photos), 8)
        complete = Case.objects.filter(subject__trial=trial, status="complete").count()
        self.assertEqual(complete, 7)
        b = self.browser
        reader = User.objects.get(email="reader1@visus.example")

        # Unaided: R02 and R03 through the services, R01 every case with the keyboard.
        self.service_reads(trial, photos, "unaided")
        self.sign_in(reader.email, "visus-demo-2026")
        self.assertEqual(self.read_phase_in_the_browser(photos, "unaided"), complete)
        signed = Read.objects.filter(reader=reader, phase="unaided", status="signed")
        self.assertEqual(signed.count(), complete)

        # The washout: the AI-aided phase says when it opens, and opens nothing.
        self.click_and_load(b.find_element(By.CSS_SELECTOR, "[data-testid=next-aided]"))
        opens = min(r.signed_at for r in signed) + timedelta(days=28)
        self.assertIn(
            f"The AI-aided phase opens for you on {opens:%Y-%m-%d} at {opens:%H:%M} UTC",
            b.find_element(By.CSS_SELECTOR, ".messages, [role=status]").text,
        )
        self.assertFalse(Read.objects.filter(phase="aided").exists())

        # The reading clock a day past the washout (the live server's thread reads the same clock).
        later = timezone.now() + timedelta(days=29)
        clock = mock.patch("reading.clock.now", side_effect=lambda: later)
        clock.start()
        self.addCleanup(clock.stop)
        self.assertEqual(self.read_phase_in_the_browser(photos, "aided"), complete)
        self.service_reads(trial, photos, "aided")
        aided = Read.objects.filter(phase="aided", status="signed")
        self.assertEqual(aided.count(), 3 * complete)
        self.assertFalse(aided.filter(unaided_read__isnull=True).exists())  # each linked to its unaided read

        # The panel member adjudicates the case graded three ways (2, 3 and 4).
        tie = Adjudication.objects.get(case_id=next(c for c, p in photos.items() if p == TIE_PHOTO))
        self.assertEqual(tie.discordance, ["no majority for the ICDR diabetic retinopathy grade"])
        self.sign_in("adjudicator@visus.example", "visus-demo-2026")
        b.get(f"{self.live_server_url}/reading/trials/{trial.slug}/adjudication/")
        form = b.find_element(By.CSS_SELECTOR, f"input[name=adjudication][value='{tie.pk}']").find_element(
            By.XPATH, "./ancestor::form"
        )
        Select(form.find_element(By.NAME, f"{tie.pk}-icdr_grade")).select_by_value("3")
        form.find_element(By.NAME, f"{tie.pk}-username").send_keys("adjudicator@visus.example")
        form.find_element(By.NAME, f"{tie.pk}-password").send_keys("visus-demo-2026")
        self.click_and_load(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        self.assertIn("the reference standard is recorded", b.find_element(By.CSS_SELECTOR, ".messages").text)
        reference = ReferenceStandard.objects.get(case=tie.case)
        self.assertEqual((reference.icdr_grade, reference.source), (3, "adjudication"))
        adjudicator = User.objects.get(email="adjudicator@visus.example")
        for other in Adjudication.objects.filter(trial=trial, status="open"):  # any other tie the draws made
            services.adjudication_sign(
                adjudication=other,
                signer=adjudicator,
                password="visus-demo-2026",
                meaning=services.MEANING_ADJUDICATE,
                answers={"icdr_grade": "0"},
                version=other.version,
            )
        self.assertEqual(ReferenceStandard.objects.filter(case__subject__trial=trial).count(), complete)

        # The manager locks the reference standard with a signature.
        self.sign_in("manager@visus.example", "visus-demo-2026")
        b.get(f"{self.live_server_url}/reading/trials/{trial.slug}/reference/")
        for name, value in (("username", "manager@visus.example"), ("password", "visus-demo-2026")):
            fields = b.find_elements(By.NAME, name)
            if fields:
                fields[0].send_keys(value)
        self.click_and_load(b.find_element(By.XPATH, "//button[normalize-space()='Sign and lock']"))
        self.assertIn("Locked on", self.wait_for("[data-testid=reference-locked]").text)
        self.assertIsNotNone(ReadingSetup.objects.get(trial=trial).reference_locked_at)

        # The evaluation dashboard: the unaided-vs-aided MRMC comparison of the three readers on the seven cases.
        b.get(f"{self.live_server_url}/evaluation/trials/{trial.slug}/dashboard/")
        row = self.wait_for("[data-testid=mrmc-referable_dr]", timeout=30).find_element(
            By.XPATH, ".//tr[td[normalize-space()='Readers AI-aided vs unaided']]"
        )
        self.assertNotIn("Not computed", row.text)
        self.assertIn(f"3 x {complete}", row.text)
