"""The reading API, for every role: reader, other reader, coordinator, manager, monitor, anonymous."""

from __future__ import annotations

from django.test import TestCase
from rest_framework.test import APIClient

from platform_core.audit.models import AuditEvent
from reading import services
from reading.models import Adjudication, LesionMark, Read
from tests.support.reading import GOOD, GOOD_CONF, PASSWORD, ReadingWorld


class ApiTestCase(TestCase):
    world_options: dict = {}

    def setUp(self):
        self.w = ReadingWorld(**self.world_options)
        self.slug = self.w.trial.slug

    def as_(self, user):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    def others(self):
        """Everyone who must not touch the reader's read."""
        return {
            "other reader": self.w.reader2,
            "coordinator": self.w.coord1,
            "manager": self.w.manager,
            "monitor": self.w.monitor,
            "anonymous": None,
        }


class ReadNextApiTests(ApiTestCase):
    def test_reader_gets_their_next_case_without_pseudonym_or_site(self):
        response = self.as_(self.w.reader).post(f"/api/v1/reading/trials/{self.slug}/next/", {"phase": "unaided"})
        self.assertEqual(response.status_code, 200, response.content)
        body = response.json()
        self.assertEqual((body["number"], body["status"], body["version"]), (1, "draft", 1))
        text = response.content.decode()
        for secret in (self.w.subject1.pseudonym, self.w.subject2.pseudonym, "H01", "H02", "visit_day"):
            self.assertNotIn(secret, text)
        again = self.as_(self.w.reader).post(f"/api/v1/reading/trials/{self.slug}/next/", {"phase": "unaided"})
        self.assertEqual(again.json()["id"], body["id"])

    def test_other_roles_get_no_case(self):
        for role, user in self.others().items():
            if role == "other reader":
                continue
            response = self.as_(user).post(f"/api/v1/reading/trials/{self.slug}/next/", {"phase": "unaided"})
            self.assertIn(response.status_code, (401, 403, 404), role)
        self.assertFalse(Read.objects.exists())

    def test_an_unknown_phase_is_a_clear_400(self):
        response = self.as_(self.w.reader).post(f"/api/v1/reading/trials/{self.slug}/next/", {"phase": "x"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("phase", response.json()["error"]["fields"])

    def test_done_is_204(self):
        for _ in self.w.cases:
            self.w.signed_read(self.w.reader)
        response = self.as_(self.w.reader).post(f"/api/v1/reading/trials/{self.slug}/next/", {"phase": "unaided"})
        self.assertEqual(response.status_code, 204)


class ReadWriteApiTests(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        self.url = f"/api/v1/reading/reads/{self.read.pk}/"

    def test_draft_then_sign_with_password(self):
        client = self.as_(self.w.reader)
        response = client.put(
            self.url + "draft/", {"version": 1, "answers": GOOD, "confidences": GOOD_CONF, "seconds": 9}, format="json"
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["version"], 2)
        stale = client.put(self.url + "draft/", {"version": 1, "answers": {}, "confidences": {}}, format="json")
        self.assertEqual(stale.status_code, 409)
        self.assertEqual(stale.json()["error"]["code"], "stale")
        wrong = client.post(
            self.url + "sign/", {"version": 2, "password": "wrong", "meaning": services.MEANING_READ}, format="json"
        )
        self.assertEqual(wrong.status_code, 400)
        self.assertNotIn("wrong", wrong.content.decode().replace("wrong", "", 0).split('"message"')[0])
        signed = client.post(
            self.url + "sign/",
            {"version": 2, "username": self.w.reader.email, "password": PASSWORD, "meaning": services.MEANING_READ},
            format="json",
        )
        self.assertEqual(signed.status_code, 200, signed.content)
        self.assertEqual(signed.json()["signature_name"], self.w.reader.full_name)
        self.assertNotIn(PASSWORD, signed.content.decode())
        twice = client.post(
            self.url + "sign/", {"version": 2, "password": PASSWORD, "meaning": services.MEANING_READ}, format="json"
        )
        self.assertEqual(twice.status_code, 409)

    def test_amend_via_api(self):
        read = self.w.signed_read(self.w.reader2)
        response = self.as_(self.w.reader2).post(
            f"/api/v1/reading/reads/{read.pk}/amend/",
            {
                "version": read.version,
                "reason": "typo",
                "answers": {**GOOD, "icdr_grade": "1"},
                "confidences": GOOD_CONF,
                "username": self.w.reader2.email,
                "password": PASSWORD,
                "meaning": services.MEANING_AMEND,
            },
            format="json",
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["answers"]["icdr_grade"], "1")

    def test_nobody_else_reads_or_writes_the_read(self):
        for role, user in self.others().items():
            client = self.as_(user)
            self.assertIn(client.get(self.url).status_code, (401, 403, 404), role)
            response = client.put(self.url + "draft/", {"version": 1, "answers": GOOD}, format="json")
            self.assertIn(response.status_code, (401, 403, 404), role)
            response = client.post(
                self.url + "sign/",
                {"version": 1, "password": PASSWORD, "meaning": services.MEANING_READ},
                format="json",
            )
            self.assertIn(response.status_code, (401, 403, 404), role)
        self.read.refresh_from_db()
        self.assertEqual((self.read.version, self.read.status), (1, "draft"))

    def test_manager_resets_with_a_reason_and_nobody_else_can(self):
        for role, user in self.others().items():
            if role == "manager":
                continue
            response = self.as_(user).post(self.url + "reset/", {"reason": "x"}, format="json")
            self.assertIn(response.status_code, (401, 403, 404), role)
        self.assertEqual(self.as_(self.w.manager).post(self.url + "reset/", {}, format="json").status_code, 400)
        response = self.as_(self.w.manager).post(self.url + "reset/", {"reason": "start over"}, format="json")
        self.assertEqual(response.status_code, 204)
        self.assertFalse(Read.objects.filter(pk=self.read.pk).exists())


class MarkApiTests(ApiTestCase):
    world_options = {"images": True}

    def tearDown(self):
        self.w.delete_files()

    def test_reader_adds_changes_and_deletes_marks_and_others_cannot(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        case_file = self.w.files[read.case_id]
        client = self.as_(self.w.reader)
        detail = client.get(f"/api/v1/reading/reads/{read.pk}/").json()
        self.assertEqual(detail["files"][0]["id"], str(case_file.pk))
        self.assertIn(f"/reading/reads/{read.pk}/files/", detail["files"][0]["preview_url"])
        body = {"case_file": str(case_file.pk), "kind": "haemorrhage", "shape": "point", "x": 10, "y": 10}
        response = client.post(f"/api/v1/reading/reads/{read.pk}/marks/", body, format="json")
        self.assertEqual(response.status_code, 201, response.content)
        mark_url = f"/api/v1/reading/marks/{response.json()['id']}/"
        for role, user in self.others().items():
            self.assertIn(self.as_(user).patch(mark_url, {"x": 1}, format="json").status_code, (401, 403, 404), role)
            self.assertIn(self.as_(user).delete(mark_url).status_code, (401, 403, 404), role)
        self.assertEqual(client.patch(mark_url, {"x": 20}, format="json").json()["x"], 20)
        self.assertEqual(client.delete(mark_url).status_code, 204)
        self.assertFalse(LesionMark.objects.exists())

    def test_reader_moves_and_resizes_marks_inside_the_image_until_signed(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        case_file = self.w.files[read.case_id]  # 400 x 300 pixels
        client = self.as_(self.w.reader)
        add = f"/api/v1/reading/reads/{read.pk}/marks/"
        point = client.post(
            add,
            {"case_file": str(case_file.pk), "kind": "haemorrhage", "shape": "point", "x": 10, "y": 10},
            format="json",
        ).json()
        box = client.post(
            add,
            {
                "case_file": str(case_file.pk),
                "kind": "hard_exudate",
                "shape": "box",
                "x": 50,
                "y": 60,
                "width": 40,
                "height": 30,
            },
            format="json",
        ).json()
        point_url, box_url = (f"/api/v1/reading/marks/{m['id']}/" for m in (point, box))

        def geometry(mark_id):
            m = LesionMark.objects.get(pk=mark_id)
            return (m.x, m.y, m.width, m.height)

        # Moved (a point; a box's body) and resized (a box's corner: x, y, width and height together).
        self.assertEqual(client.patch(point_url, {"x": 399.5, "y": 300}, format="json").status_code, 200)
        self.assertEqual(geometry(point["id"]), (399.5, 300, 0, 0))
        moved = client.patch(box_url, {"x": 360, "y": 270}, format="json")
        self.assertEqual((moved.json()["x"], moved.json()["y"], moved.json()["width"]), (360, 270, 40))
        resized = client.patch(box_url, {"x": 300.5, "y": 200, "width": 99.5, "height": 100}, format="json")
        self.assertEqual(resized.status_code, 200, resized.content)
        self.assertEqual(geometry(box["id"]), (300.5, 200, 99.5, 100))
        # Outside the photograph, or a box without a size: refused with the reason, and nothing changes.
        for url, body, message in (
            (point_url, {"x": 400.5}, "outside the image (400 x 300 pixels)"),
            (point_url, {"y": -1}, "greater than or equal to 0"),
            (box_url, {"x": 301}, "outside the image (400 x 300 pixels)"),
            (box_url, {"height": 101}, "outside the image (400 x 300 pixels)"),
            (box_url, {"width": 0}, "A box needs a width and a height."),
            (box_url, {"height": -5}, "greater than or equal to 0"),
            (point_url, {"width": 3}, "A point has no width or height."),
        ):
            response = client.patch(url, body, format="json")
            self.assertEqual(response.status_code, 400, (body, response.content))
            self.assertIn(message, response.content.decode(), body)
        self.assertEqual(geometry(point["id"]), (399.5, 300, 0, 0))
        self.assertEqual(geometry(box["id"]), (300.5, 200, 99.5, 100))
        moves = AuditEvent.objects.filter(action="read.mark_change", object_id=box["id"]).order_by("seq")
        self.assertEqual(
            [e.changes for e in moves],
            [
                {"x": [50.0, 360.0], "y": [60.0, 270.0]},
                {"x": [360.0, 300.5], "y": [270.0, 200.0], "width": [40.0, 99.5], "height": [30.0, 100.0]},
            ],
        )
        # Signed: the marks never move again.
        read = services.read_draft_save(
            reader=self.w.reader, read=read, version=read.version, answers=GOOD, confidences=GOOD_CONF
        )
        services.read_sign(
            read=read, signer=self.w.reader, password=PASSWORD, meaning=services.MEANING_READ, version=read.version
        )
        for url, body in ((point_url, {"x": 5}), (box_url, {"x": 10, "width": 20})):
            response = client.patch(url, body, format="json")
            self.assertEqual(response.status_code, 409, response.content)
            self.assertIn("signed and locked", response.json()["error"]["message"])
        self.assertEqual(geometry(point["id"]), (399.5, 300, 0, 0))
        self.assertEqual(geometry(box["id"]), (300.5, 200, 99.5, 100))

    def test_a_file_of_another_case_cannot_be_marked(self):
        read = services.read_next(reader=self.w.reader, trial=self.w.trial, phase="unaided")
        other = next(f for case_id, f in self.w.files.items() if case_id != read.case_id)
        body = {"case_file": str(other.pk), "kind": "haemorrhage", "shape": "point", "x": 10, "y": 10}
        response = self.as_(self.w.reader).post(f"/api/v1/reading/reads/{read.pk}/marks/", body, format="json")
        self.assertEqual(response.status_code, 404)


class ProgressApiTests(ApiTestCase):
    def test_reader_sees_own_progress_per_phase(self):
        self.w.signed_read(self.w.reader)
        response = self.as_(self.w.reader).get(f"/api/v1/reading/trials/{self.slug}/progress/")
        self.assertEqual(response.json(), [{"phase": "unaided", "signed": 1, "draft": 0, "remaining": 1}])

    def test_progress_table_for_managers_and_monitors_only_without_answers(self):
        self.w.signed_read(self.w.reader)
        for user in (self.w.manager, self.w.monitor):
            response = self.as_(user).get(f"/api/v1/reading/trials/{self.slug}/readers/")
            self.assertEqual(response.status_code, 200)
            self.assertEqual(len(response.json()), 3)
            self.assertNotIn("icdr_grade", response.content.decode())
        for user in (self.w.reader, self.w.coord1, None):
            response = self.as_(user).get(f"/api/v1/reading/trials/{self.slug}/readers/")
            self.assertIn(response.status_code, (401, 403, 404))


class SetupApiTests(ApiTestCase):
    def test_manager_sets_design_and_assigns_and_others_cannot(self):
        response = self.as_(self.w.manager).post(
            f"/api/v1/reading/trials/{self.slug}/setup/", {"grade_gap": 3}, format="json"
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["grade_gap"], 3)
        bad = self.as_(self.w.manager).post(
            f"/api/v1/reading/trials/{self.slug}/assignments/",
            {"reader": self.w.coord1.email, "phase": "unaided", "group": "resident"},
            format="json",
        )
        self.assertEqual(bad.status_code, 400)
        for role, user in self.others().items():
            if role == "manager":
                continue
            response = self.as_(user).post(
                f"/api/v1/reading/trials/{self.slug}/setup/", {"grade_gap": 1}, format="json"
            )
            self.assertIn(response.status_code, (401, 403, 404), role)
        self.assertEqual(AuditEvent.objects.filter(action="reading.setup_set").count(), 2)


class AdjudicationApiTests(ApiTestCase):
    def test_panel_member_sees_prior_reads_and_signs(self):
        for _ in self.w.cases:
            self.w.signed_read(self.w.reader, answers={"icdr_grade": "0", "referable_dr": "no", "confidence": 90})
            self.w.signed_read(self.w.reader2, answers={"icdr_grade": "4", "referable_dr": "yes", "confidence": 90})
        url = f"/api/v1/reading/trials/{self.slug}/adjudications/"
        response = self.as_(self.w.adjudicator).get(url)
        self.assertEqual(response.status_code, 200)
        queue = response.json()
        self.assertEqual(len(queue), 2)
        self.assertEqual(len(queue[0]["prior_reads"]), 2)
        for role, user in self.others().items():
            self.assertIn(self.as_(user).get(url).status_code, (401, 403, 404), role)
        adjudication = Adjudication.objects.get(pk=queue[0]["id"])
        sign_url = f"/api/v1/reading/adjudications/{adjudication.pk}/sign/"
        body = {
            "version": 1,
            "answers": {"icdr_grade": "3"},
            "username": self.w.adjudicator.email,
            "password": PASSWORD,
            "meaning": services.MEANING_ADJUDICATE,
        }
        self.assertIn(self.as_(self.w.reader).post(sign_url, body, format="json").status_code, (403, 404))
        response = self.as_(self.w.adjudicator).post(sign_url, body, format="json")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["status"], "signed")


class SchemaTests(TestCase):
    def test_the_schema_documents_every_reading_endpoint(self):
        from tests.support.factories import UserFactory

        client = APIClient()
        client.force_authenticate(UserFactory())
        paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]
        schema = " ".join(paths).replace("{pk}", "{id}")
        for path in (
            "/reading/trials/{slug}/next/",
            "/reading/reads/{id}/draft/",
            "/reading/reads/{id}/sign/",
            "/reading/reads/{id}/amend/",
            "/reading/reads/{id}/marks/",
            "/reading/marks/{id}/",
            "/reading/trials/{slug}/progress/",
            "/reading/adjudications/{id}/sign/",
        ):
            self.assertIn(path, schema)


class ManagerApiTests(ApiTestCase):
    def test_manager_ends_an_assignment_adds_a_panel_member_marks_calibration_and_locks(self):
        from reading.models import CalibrationCase, PanelMember, ReaderAssignment, ReadingSetup

        assignment = self.w.assignments[(self.w.reader3.pk, "unaided")]
        posts = [
            (f"/api/v1/reading/assignments/{assignment.pk}/end/", {"reason": "left"}),
            (f"/api/v1/reading/trials/{self.slug}/panel/", {"user": self.w.reader3.email}),
            (
                f"/api/v1/reading/trials/{self.slug}/calibration/",
                {"case": str(self.w.case1.pk), "known_answers": {"icdr_grade": "2"}},
            ),
            (
                f"/api/v1/reading/trials/{self.slug}/reference-lock/",
                {"username": self.w.manager.email, "password": PASSWORD, "meaning": services.MEANING_LOCK},
            ),
        ]
        for role, user in self.others().items():
            if role == "manager":
                continue
            for url, body in posts:
                self.assertIn(self.as_(user).post(url, body, format="json").status_code, (401, 403, 404), (role, url))
        self.assertEqual(self.as_(self.w.manager).post(posts[0][0], {"reason": ""}, format="json").status_code, 400)
        for url, body in posts:
            response = self.as_(self.w.manager).post(url, body, format="json")
            self.assertEqual(response.status_code, 204, (url, response.content))
        self.assertFalse(ReaderAssignment.objects.get(pk=assignment.pk).is_active)
        self.assertTrue(PanelMember.objects.filter(user=self.w.reader3).exists())
        self.assertTrue(CalibrationCase.objects.filter(case=self.w.case1).exists())
        self.assertIsNotNone(ReadingSetup.objects.get(trial=self.w.trial).reference_locked_at)

    def test_a_wrong_password_does_not_lock_the_reference(self):
        from reading.models import ReadingSetup

        response = self.as_(self.w.manager).post(
            f"/api/v1/reading/trials/{self.slug}/reference-lock/",
            {"username": self.w.manager.email, "password": "nope", "meaning": services.MEANING_LOCK},
            format="json",
        )
        self.assertEqual(response.status_code, 400)
        self.assertIsNone(ReadingSetup.objects.get(trial=self.w.trial).reference_locked_at)
