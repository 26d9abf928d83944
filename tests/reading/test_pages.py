"""Reading pages: the reader's worklist and reading page, the manager's set-up and progress, the adjudication
queue; success paths and refusals."""

from __future__ import annotations

from django.test import TestCase

from platform_core.audit.models import AuditEvent
from reading import services
from reading.models import Adjudication, Read, ReaderAssignment
from tests.support.reading import PASSWORD, ReadingWorld


def read_post(read, **extra):
    data = {
        "version": read.version,
        "seconds": 15,
        "q_icdr_grade": "2",
        "c_icdr_grade": "70",
        "q_referable_dr": "yes",
        "c_referable_dr": "75",
        "q_confidence": "60",
    }
    data.update(extra)
    return data


class WorklistAndReadPageTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()
        self.client.force_login(self.w.reader)

    def test_worklist_shows_progress_and_next_opens_a_case(self):
        page = self.client.get("/reading/")
        self.assertContains(page, self.w.trial.protocol_number)
        self.assertContains(page, 'data-testid="next-unaided"')
        response = self.client.post(f"/reading/trials/{self.w.trial.slug}/next/unaided/")
        read = Read.objects.get(reader=self.w.reader)
        self.assertRedirects(response, f"/reading/reads/{read.pk}/")

    def test_save_draft_then_sign_with_password_and_meaning(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        page = self.client.get(f"/reading/reads/{read.pk}/")
        self.assertContains(page, "Confidence: ICDR diabetic retinopathy grade (0-100)")
        response = self.client.post(f"/reading/reads/{read.pk}/", read_post(read, save="1"))
        self.assertRedirects(response, f"/reading/reads/{read.pk}/")
        read.refresh_from_db()
        self.assertEqual(
            (read.answers["icdr_grade"], read.confidences["icdr_grade"], read.seconds_on_case), ("2", 70, 15)
        )
        wrong = self.client.post(
            f"/reading/reads/{read.pk}/",
            read_post(read, sign="1", username=self.w.reader.email, password="not-it", meaning=services.MEANING_READ),
        )
        self.assertContains(wrong, "The password is not correct")
        self.assertNotContains(wrong, "not-it")
        read.refresh_from_db()
        response = self.client.post(
            f"/reading/reads/{read.pk}/",
            read_post(read, sign="1", username=self.w.reader.email, password=PASSWORD, meaning=services.MEANING_READ),
        )
        following = Read.objects.get(reader=self.w.reader, number=2)
        self.assertRedirects(response, f"/reading/reads/{following.pk}/")  # straight on to the next case
        read.refresh_from_db()
        self.assertEqual(read.status, "signed")
        self.assertContains(self.client.get(f"/reading/reads/{read.pk}/"), "I confirm this read")
        again = self.client.post(f"/reading/reads/{read.pk}/", read_post(read, save="1", q_icdr_grade="4"), follow=True)
        self.assertContains(again, "already signed and locked: nothing was changed")
        read.refresh_from_db()
        self.assertEqual((read.answers["icdr_grade"], read.status), ("2", "signed"))

    def test_a_stale_form_shows_a_clear_message(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.client.post(f"/reading/reads/{read.pk}/", read_post(read, save="1"))
        stale = self.client.post(f"/reading/reads/{read.pk}/", read_post(read, save="1", q_icdr_grade="4"))
        self.assertContains(stale, "another tab")
        read.refresh_from_db()
        self.assertEqual(read.answers["icdr_grade"], "2")

    def test_other_people_cannot_open_the_read(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        for user in (self.w.reader2, self.w.coord1, self.w.manager, self.w.monitor):
            self.client.force_login(user)
            self.assertIn(self.client.get(f"/reading/reads/{read.pk}/").status_code, (403, 404))
        self.client.logout()
        self.assertEqual(self.client.get(f"/reading/reads/{read.pk}/").status_code, 302)


class ManagePageTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()

    def test_manager_sees_progress_and_assigns_a_reader(self):
        self.w.signed_read(self.w.reader)
        ReaderAssignment.objects.filter(reader=self.w.reader3).delete()
        self.client.force_login(self.w.manager)
        page = self.client.get(f"/reading/trials/{self.w.trial.slug}/manage/")
        self.assertContains(page, 'data-testid="progress-table"')
        self.assertContains(page, "supports multi-reader multi-case")
        self.assertNotContains(page, "icdr_grade")
        response = self.client.post(
            f"/reading/trials/{self.w.trial.slug}/manage/",
            {"assign": "1", "reader": self.w.reader3.email, "phase": "unaided", "group": "optometrist"},
        )
        self.assertRedirects(response, f"/reading/trials/{self.w.trial.slug}/manage/")
        self.assertTrue(ReaderAssignment.objects.filter(reader=self.w.reader3, group="optometrist").exists())

    def test_monitor_sees_but_cannot_change_and_readers_are_refused(self):
        self.client.force_login(self.w.monitor)
        url = f"/reading/trials/{self.w.trial.slug}/manage/"
        self.assertEqual(self.client.get(url).status_code, 200)
        self.assertEqual(self.client.post(url, {"setup": "1", "crossing": "k_per_case"}).status_code, 403)
        for user in (self.w.reader, self.w.coord1):
            self.client.force_login(user)
            self.assertIn(self.client.get(url).status_code, (403, 404))


class AdjudicationPageTests(TestCase):
    def test_panel_member_signs_a_discordant_case(self):
        w = ReadingWorld()
        for _ in w.cases:
            w.signed_read(w.reader, answers={"icdr_grade": "0", "referable_dr": "no", "confidence": 90})
            w.signed_read(w.reader2, answers={"icdr_grade": "4", "referable_dr": "yes", "confidence": 90})
        url = f"/reading/trials/{w.trial.slug}/adjudication/"
        self.client.force_login(w.reader)
        self.assertEqual(self.client.get(url).status_code, 403)
        self.client.force_login(w.adjudicator)
        page = self.client.get(url)
        self.assertContains(page, "unblinded by design")
        adjudication = Adjudication.objects.first()
        prefix = str(adjudication.pk)
        response = self.client.post(
            url,
            {
                "adjudication": prefix,
                f"{prefix}-version": 1,
                f"{prefix}-icdr_grade": "3",
                f"{prefix}-username": w.adjudicator.email,
                f"{prefix}-password": PASSWORD,
                f"{prefix}-meaning": services.MEANING_ADJUDICATE,
            },
        )
        self.assertRedirects(response, url)
        adjudication.refresh_from_db()
        self.assertEqual(adjudication.status, "signed")
        self.assertTrue(AuditEvent.objects.filter(action="adjudication.sign").exists())


class WashoutPageTests(TestCase):
    def test_the_aided_phase_says_when_it_opens_and_opens_once_the_reading_clock_passes_the_washout(self):
        from datetime import timedelta
        from unittest import mock

        from django.utils import timezone

        w = ReadingWorld(aided=True)
        first = w.signed_read(w.reader)
        w.signed_read(w.reader)
        url = f"/reading/trials/{w.trial.slug}/next/aided/"
        self.client.force_login(w.reader)
        response = self.client.post(url, follow=True)
        self.assertRedirects(response, "/reading/")
        opens = first.signed_at + timedelta(days=28)
        self.assertContains(response, f"The AI-aided phase opens for you on {opens:%Y-%m-%d} at {opens:%H:%M} UTC")
        self.assertFalse(Read.objects.filter(phase="aided").exists())
        # The reading clock a day past the washout: the same button opens the first aided read.
        with mock.patch("reading.clock.now", return_value=timezone.now() + timedelta(days=29)):
            response = self.client.post(url)
        aided = Read.objects.get(phase="aided")
        self.assertRedirects(response, f"/reading/reads/{aided.pk}/", fetch_redirect_response=False)
        self.assertEqual(aided.unaided_read.reader, w.reader)
        # Every case read aided (the open draft first): nothing left, and no washout date.
        with mock.patch("reading.clock.now", return_value=timezone.now() + timedelta(days=29)):
            for _ in w.cases:
                w.signed_read(w.reader, phase="aided")
            response = self.client.post(url, follow=True)
        self.assertContains(response, "Nothing left to read in the ai-aided phase")
        self.assertNotContains(response, "opens for you")
