"""The blinding walk (issue 11, item 5): every URL pattern and API endpoint, requested as a reader with an
unsigned case, shows them no AI output, no other reader's read, no reference standard, no pseudonym and no
site. A URL pattern without a blinding decision in ``DECISIONS`` fails the walk."""

from __future__ import annotations

from django.test import TestCase
from django.urls import get_resolver
from rest_framework.test import APIClient

from evaluation.services import EXPORT_NAMES
from reading import services
from reading.models import Adjudication
from tests.support.reading import ReadingWorld
from tests.support.urls import fill, walk
from trials.services import reference_standard_record

SHOWS_NO_TRIAL_DATA = "shows no subject, case, read, reference or AI data"
READER_REFUSED = "refused to readers by role (403) or scoped to the user's own rows, which a reader has none of"
EXPORTS_REFUSED = "exports for statisticians: managers, statisticians and monitors who do not read (may_export)"
OWN_READ = "the reader's own read only (reading.selectors.reads_of): case number, eye, images, VF and OCT values"
# Every URL pattern of the project, and why a reader with unsigned cases sees nothing they must not see there.
DECISIONS: dict[str, str] = {
    "": SHOWS_NO_TRIAL_DATA,
    "accounts/login/": SHOWS_NO_TRIAL_DATA,
    "accounts/logout/": SHOWS_NO_TRIAL_DATA,
    "accounts/password/": SHOWS_NO_TRIAL_DATA,
    "audit/": "audit trail: managers and monitors only",
    "trials/": "trial list: protocol, title, status; no subjects or cases",
    "trials/new/": "managers only",
    "trials/cases/<uuid:pk>/": "SUBJECT_ROLES only (no readers); AI panel blinded by trials.selectors",
    "trials/cases/<uuid:pk>/status/": "coordinators only",
    "trials/cases/<uuid:pk>/rnfl/": "coordinators only",
    "trials/files/<uuid:pk>/<str:variant>/": "SUBJECT_ROLES only; readers get files under their read's URL",
    "trials/files/<uuid:pk>/retire/": "POST only, coordinators of the file's site only",
    "trials/formats/visual-field-csv/": "the visual-field CSV format: documentation, no trial data",
    "trials/formats/visual-field-csv/template.csv": "the template CSV: a fixed example field, no trial data",
    "trials/<slug:slug>/": "trial page: sites scoped by sites_for (a reader sees none), no subjects",
    "trials/<slug:slug>/edit/": "managers only",
    "trials/<slug:slug>/transition/": "managers only",
    "trials/<slug:slug>/sites/add/": "managers only",
    "trials/<slug:slug>/sites/<uuid:pk>/": "managers only",
    "trials/<slug:slug>/subjects/": "SUBJECT_ROLES only",
    "trials/<slug:slug>/subjects/enrol/": "coordinators only",
    "trials/<slug:slug>/subjects/<str:pseudonym>/": "SUBJECT_ROLES only",
    "trials/<slug:slug>/subjects/<str:pseudonym>/withdraw/": "coordinators only",
    "trials/<slug:slug>/subjects/<str:pseudonym>/cases/add/": "coordinators only",
    "diagnosis/predictions/<uuid:pk>/overlay/": "SUBJECT_ROLES only, and blinded for the trial's readers",
    "diagnosis/trials/<slug:slug>/fusion/calibrate/": "POST only, the trial's managers only; redirects to the trial",
    "reading/": "the reader's own progress counts",
    "reading/trials/<slug:slug>/next/<str:phase>/": "POST only; serves the reader's own next read",
    "reading/trials/<slug:slug>/manage/": "managers, monitors, statisticians: counts and times, no answers",
    "reading/trials/<slug:slug>/adjudication/": "adjudication panel only (unblinded by design)",
    "reading/adjudications/<uuid:pk>/files/<uuid:file_pk>/": "adjudication panel only: the case's images (404 else)",
    "reading/reads/<uuid:pk>/": OWN_READ,
    "reading/reads/<uuid:pk>/files/<uuid:file_pk>/<str:variant>/": "images of the reader's own read's case",
    "reading/reads/<uuid:pk>/ai/<uuid:prediction_pk>/overlay/": "only inside the reader's own AI-aided read",
    "reading/trials/<slug:slug>/signed/": "the reader's own signed reads: case numbers, phases, signatures",
    "reading/reads/<uuid:pk>/amend/": "the reader's own signed read only (reads_of); a draft redirects to its page",
    "reading/trials/<slug:slug>/reset/": "managers only: unsigned reads by reader, phase and number, no answers",
    "reading/trials/<slug:slug>/calibration/": "managers only: calibration cases and reader drift",
    "reading/trials/<slug:slug>/reference/": "managers only: reference-standard counts and the signed lock",
    "api/v1/auth/token/": SHOWS_NO_TRIAL_DATA,
    "api/v1/me/": "the user's own account and memberships",
    "api/v1/hospitals/": "the user's own hospitals",
    "api/v1/audit-events/": "managers and monitors only",
    "api/v1/trials/": "trial list: no subjects or cases",
    "api/v1/trials/create/": "managers only",
    "api/v1/trials/<slug:slug>/": "trial detail: no subjects or cases",
    "api/v1/trials/<slug:slug>/transition/": "managers only",
    "api/v1/trials/<slug:slug>/sites/": "sites_for: a reader sees none",
    "api/v1/trials/<slug:slug>/sites/add/": "managers only",
    "api/v1/trials/<slug:slug>/sites/<uuid:pk>/": "managers only",
    "api/v1/trials/<slug:slug>/enrol/": "coordinators only",
    "api/v1/subjects/": READER_REFUSED,
    "api/v1/subjects/<uuid:pk>/": READER_REFUSED,
    "api/v1/subjects/<uuid:pk>/withdraw/": "coordinators only",
    "api/v1/subjects/<uuid:pk>/cases/": "coordinators only",
    "api/v1/cases/": READER_REFUSED,
    "api/v1/cases/<uuid:pk>/": READER_REFUSED,
    "api/v1/cases/<uuid:pk>/status/": "coordinators only",
    "api/v1/cases/<uuid:pk>/rnfl/": "coordinators only",
    "api/v1/cases/<uuid:pk>/files/": READER_REFUSED,
    "api/v1/cases/<uuid:pk>/files/upload/": "coordinators only",
    "api/v1/models/": "the model registry: no case data",
    "api/v1/cases/<uuid:pk>/inference-jobs/": "SUBJECT_ROLES only, blinded for the trial's readers",
    "api/v1/cases/<uuid:pk>/predictions/": "SUBJECT_ROLES only, blinded for the trial's readers",
    "api/v1/reading/trials/<slug:slug>/next/": "POST only; the reader's own next read",
    "api/v1/reading/trials/<slug:slug>/progress/": "the reader's own counts",
    "api/v1/reading/trials/<slug:slug>/readers/": "managers, monitors, statisticians",
    "api/v1/reading/trials/<slug:slug>/setup/": "managers only (POST)",
    "api/v1/reading/trials/<slug:slug>/assignments/": "managers only (POST)",
    "api/v1/reading/trials/<slug:slug>/adjudications/": "adjudication panel only",
    "api/v1/reading/adjudications/<uuid:pk>/sign/": "adjudication panel only (POST)",
    "api/v1/reading/trials/<slug:slug>/panel/": "managers only (POST)",
    "api/v1/reading/trials/<slug:slug>/calibration/": "managers only (POST)",
    "api/v1/reading/trials/<slug:slug>/reference-lock/": "managers only (POST)",
    "api/v1/reading/assignments/<uuid:pk>/end/": "managers only (POST)",
    "api/v1/reading/reads/<uuid:pk>/": OWN_READ,
    "api/v1/reading/reads/<uuid:pk>/draft/": "the reader's own read (PUT)",
    "api/v1/reading/reads/<uuid:pk>/sign/": "the reader's own read (POST)",
    "api/v1/reading/reads/<uuid:pk>/amend/": "the reader's own read (POST)",
    "api/v1/reading/reads/<uuid:pk>/reset/": "managers only (POST)",
    "api/v1/reading/reads/<uuid:pk>/marks/": "the reader's own read (POST)",
    "api/v1/reading/marks/<uuid:pk>/": "marks of the reader's own reads (PATCH, DELETE)",
    "evaluation/trials/<slug:slug>/exports/": EXPORTS_REFUSED,
    "evaluation/trials/<slug:slug>/exports/<str:name>.csv": EXPORTS_REFUSED,
    "evaluation/trials/<slug:slug>/dashboard/": "analysis dashboard: the exports' people only (may_see_analyses)",
    "evaluation/trials/<slug:slug>/dashboard/status/": "when the dashboard's analyses were stored: its people only",
    **{f"api/v1/evaluation/trials/<slug:slug>/exports/{name}.csv": EXPORTS_REFUSED for name in EXPORT_NAMES},
    # people: trial managers' pages (readers 403); the invitation link shows only the invitee's own invitation
    "accounts/people/": "people pages: trial managers only (403), scoped to the hospitals they manage",
    "accounts/people/invite/": "trial managers only",
    "accounts/people/add-existing/": "trial managers only",
    "accounts/people/<uuid:pk>/": "trial managers only, people of their hospitals (404 otherwise)",
    "accounts/people/<uuid:pk>/grant/": "trial managers only (POST)",
    "accounts/people/<uuid:pk>/roles/<uuid:membership_pk>/revoke/": "trial managers only (POST)",
    "accounts/people/<uuid:pk>/unlock/": "trial managers only (POST)",
    "accounts/people/<uuid:pk>/deactivate/": "trial managers only (POST)",
    "accounts/people/invitations/<uuid:pk>/revoke/": "trial managers only (POST)",
    "accounts/invitations/<str:token>/": "the invitee's own invitation (role and hospital): no trial data",
    "diagnosis/models/": "model registry: trial managers only (readers 403); no case data",
    "diagnosis/models/register/": "trial managers only",
    "diagnosis/models/<uuid:pk>/": "trial managers only; job counts of trials they manage and are not blinded in",
    "diagnosis/models/<uuid:pk>/status/": "trial managers only (POST)",
    "api/schema/": "the API description: no data",
    "api/docs/": "the API description: no data",
    # monitor (issue 10, items 6-8)
    "audit/export.csv": "audit trail export: managers and monitors only",
    "trials/cases/<uuid:pk>/queries/": "POST only, monitors only (and not a trial's readers)",
    "trials/queries/<uuid:pk>/<str:step>/": "POST only, monitors and the site's coordinators; never a trial's readers",
    "trials/<slug:slug>/monitoring/": "completeness grid: the trial's monitors and managers only",
    "trials/<slug:slug>/queries/": "data queries: monitors, managers, coordinators (own site); not a reader's trial",
}
# The Django admin's generated patterns: staff only (readers are not staff), and its trial models are read-only
# or call the services.
ADMIN_DECISION = "admin/"


class BlindingWalkTests(TestCase):
    def setUp(self):
        from diagnosis.models import InferenceJob, Prediction
        from tests.support.registry import register_small_models

        w = self.w = ReadingWorld(aided=True, images=True)
        w.reader2.full_name = "Zelda Otherreader"
        w.reader2.save()
        # The reader's unsigned case is at H02, where they hold no role: its site must not show.
        self.draft = self._draft_on(w.case2)
        self.other_read = self._signed_by_reader2(w.case2)
        file = w.files[w.case2.pk]
        model, _ = register_small_models()
        job = InferenceJob.objects.create(case=w.case2, model_version=model, status="succeeded")
        self.prediction = Prediction.objects.create(
            job=job,
            case=w.case2,
            model_version=model,
            runtime_ms=1.0,
            attention_overlay=file.thumbnail.name,
            class_probabilities=[0.1, 0.1, 0.1, 0.1, 0.6],
            referable_probability=0.8765432,
        )
        self.reference = reference_standard_record(actor=w.manager, case=w.case2, source="imported", icdr_grade=3)
        self.adjudication = Adjudication.objects.create(case=w.case2, trial=w.trial, discordance=["x"])
        self.secrets = {
            "pseudonym": [w.subject1.pseudonym, w.subject2.pseudonym],
            # The code alone ("H02") also names no site in the API description's examples; the name and the
            # site's id are what a leak would carry.
            "site": ["Hospital H02", str(w.subject2.site_id)],
            "AI output": [str(self.prediction.pk), "0.8765432"],
            "another read": [str(self.other_read.pk), "Zelda Otherreader"],
            "reference standard": [str(self.reference.pk), str(self.adjudication.pk)],
        }
        ids = [str(x) for x in (self.draft.pk, self.other_read.pk, w.case2.pk, w.subject2.pk, file.pk)]
        ids += [str(self.prediction.pk), str(self.adjudication.pk), str(self.reference.pk)]
        self.values = {
            "slug": [w.trial.slug],
            "pseudonym": [w.subject2.pseudonym],
            "pk": ids,
            "file_pk": [str(file.pk)],
            "prediction_pk": [str(self.prediction.pk)],
            "variant": ["preview", "content", "thumbnail", "full", "redfree", "clahe"],
            "phase": ["unaided", "aided"],
            "*": ids,
        }
        self.client.force_login(w.reader)
        self.api = APIClient()
        self.api.force_authenticate(w.reader)

    def tearDown(self):
        self.w.delete_files()

    def _draft_on(self, case):
        from reading.models import Read

        read = Read.objects.filter(reader=self.w.reader, case=case, phase="unaided").first()
        if read is None:  # served in the reader's order until the H02 case comes up
            while True:
                read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
                if read.case_id == case.pk:
                    break
                self.w.signed_read(self.w.reader)
        return read

    def _signed_by_reader2(self, case):
        from reading.models import Read

        while not Read.objects.filter(reader=self.w.reader2, case=case, status="signed").exists():
            self.w.signed_read(self.w.reader2)
        return Read.objects.get(reader=self.w.reader2, case=case)

    def leaks(self, path, response) -> list[str]:
        from urllib.parse import quote

        # What the request itself named (its path, echoed in a login redirect's ?next=) is not a leak.
        location = response.get("Location", "").replace(quote(path), "").replace(path, "")
        # Files are streamed (platform_core.storage): their bytes are read like any other body (reading them to the
        # end closes the file, as the test client wraps them).
        body = b"".join(response.streaming_content) if response.streaming else response.content
        text = body.decode(errors="replace").replace(path, "") + " " + location
        return [f"{kind} {value!r}" for kind, values in self.secrets.items() for value in values if value in text]

    def test_every_url_pattern_has_a_blinding_decision(self):
        missing = [
            route
            for route, _ in walk(get_resolver().url_patterns)
            if route not in DECISIONS and not route.startswith(ADMIN_DECISION)
        ]
        self.assertEqual(missing, [], "URL patterns without a blinding decision in DECISIONS")

    def test_a_reader_with_an_unsigned_case_sees_nothing_they_must_not_anywhere(self):
        checked = 0
        problems = []
        for route, _ in walk(get_resolver().url_patterns):
            for path in fill(route, self.values):
                if path.startswith(("/static/", "/media/")):
                    continue
                client = self.api if path.startswith("/api/") else self.client
                response = client.get(path)
                for leak in self.leaks(path, response):
                    problems.append(f"GET {path} -> {response.status_code} shows {leak}")
                checked += 1
        self.maxDiff = None
        self.assertEqual(problems, [])
        self.assertGreater(checked, 150)

    def test_the_walk_sees_the_reading_page_itself(self):
        response = self.client.get(f"/reading/reads/{self.draft.pk}/")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, f"Case {self.draft.number}")
        self.assertEqual(self.leaks("", response), [])
        api = self.api.get(f"/api/v1/reading/reads/{self.draft.pk}/")
        self.assertEqual(api.status_code, 200)
        self.assertEqual(api.json()["ai_outputs"], [])

    def test_the_walk_would_catch_a_leak(self):
        # The detector itself: the same check on a page that does show the pseudonym and the AI output.
        self.client.force_login(self.w.coord2)
        page = self.client.get(f"/trials/cases/{self.w.case2.pk}/")
        self.assertTrue(any("pseudonym" in leak for leak in self.leaks("", page)))


class AidedPhaseTests(TestCase):
    def test_ai_output_shows_in_the_aided_read_only(self):
        from datetime import timedelta

        from django.utils import timezone

        from diagnosis.models import InferenceJob, Prediction
        from reading.models import Read
        from tests.support.registry import register_small_models

        w = ReadingWorld(aided=True)
        unaided = w.signed_read(w.reader)
        model, _ = register_small_models()
        job = InferenceJob.objects.create(case=unaided.case, model_version=model, status="succeeded")
        Prediction.objects.create(
            job=job,
            case=unaided.case,
            model_version=model,
            runtime_ms=1.0,
            class_probabilities=[0.2] * 5,
            referable_probability=0.8765432,
        )
        self.client.force_login(w.reader)
        self.assertNotContains(self.client.get(f"/reading/reads/{unaided.pk}/"), "0.8765432")
        Read.objects.filter(pk=unaided.pk).update(signed_at=timezone.now() - timedelta(days=29))
        aided = services.read_next(reader=w.reader, trial=w.trial, phase="aided")
        page = self.client.get(f"/reading/reads/{aided.pk}/")
        self.assertContains(page, "0.8765432")
        self.assertContains(page, 'data-testid="ai-outputs"')
        api = APIClient()
        api.force_authenticate(w.reader)
        self.assertEqual(
            api.get(f"/api/v1/reading/reads/{aided.pk}/").json()["ai_outputs"][0]["referable_probability"], 0.8765432
        )
        # The trial-wide rule still hides the AI outputs of the trial from its readers everywhere else.
        self.assertEqual(api.get(f"/api/v1/cases/{unaided.case_id}/predictions/").status_code, 403)
