"""Exports for statisticians (issue 12, item 5): contents, de-identification, the dictionary, analyze_reads on
the exported analysis CSV, streaming through COPY, the audit trail, and who may export on page, API and command."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from django.core.management import CommandError, call_command
from django.test import TestCase
from rest_framework.test import APIClient

from evaluation import exports, portable, services
from evaluation.services import EXPORT_NAMES
from evaluation.stats.reads import parse_reads_csv
from evaluation.stats.report import analyze
from evaluation.stats.roc import auc_delong
from platform_core.audit.models import AuditEvent
from reading import services as reading_services
from reading.models import Read
from tests.support.reading import PASSWORD, ReadingWorld
from trials.services import reference_standard_record

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# (grade of the reference, then per reader the referable_dr answer and its confidence): readers disagree and
# make mistakes, so the AUCs differ between readers and are neither 0 nor 1.
STUDY = [
    (0, [("no", 90), ("no", 60), ("yes", 30)]),
    (1, [("no", 70), ("yes", 20), ("no", 80)]),
    (0, [("yes", 40), ("no", 50), ("no", 90)]),
    (3, [("yes", 80), ("yes", 90), ("no", 40)]),
    (2, [("no", 20), ("yes", 60), ("yes", 70)]),
    (4, [("yes", 95), ("yes", 30), ("yes", 50)]),
]


def text(chunks) -> str:
    return b"".join(chunks).decode()


def delete_stored(names) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        if name:
            default_storage.delete(name)


def rows_of(chunks) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text(chunks))))


class ReaderStudy:
    """Three readers sign every case of a fully crossed unaided study; one more case is a calibration case."""

    def __init__(self) -> None:
        w = self.w = ReadingWorld(reading=False)
        w.add_cases(4)
        self.calibration = w.add_cases(1)[0]
        w.start_reading()
        reading_services.calibration_case_mark(
            actor=w.manager, case=self.calibration, known_answers={"icdr_grade": "0"}
        )
        self.grade = {}
        for case, (grade, _) in zip(w.cases[:6], STUDY, strict=True):
            reference_standard_record(actor=w.manager, case=case, source="imported", icdr_grade=grade)
            self.grade[case.pk] = grade
        reference_standard_record(actor=w.manager, case=self.calibration, source="imported", icdr_grade=3)
        self.answers = {case.pk: answers for case, (_, answers) in zip(w.cases[:6], STUDY, strict=True)}
        self.readers = [w.reader, w.reader2, w.reader3]
        for r, reader in enumerate(self.readers):
            while (read := reading_services.read_next(reader=reader, trial=w.trial, phase="unaided")) is not None:
                answer, confidence = self.answers.get(read.case_id, [("no", 99)] * 3)[r]
                grade = "3" if answer == "yes" else "0"
                read = reading_services.read_draft_save(
                    reader=reader,
                    read=read,
                    version=read.version,
                    answers={"icdr_grade": grade, "referable_dr": answer, "confidence": 50},
                    confidences={"icdr_grade": 70, "referable_dr": confidence},
                    seconds=30 + r,
                )
                reading_services.read_sign(
                    read=read,
                    signer=reader,
                    password=PASSWORD,
                    meaning=reading_services.MEANING_READ,
                    version=read.version,
                )


class ExportContentTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.study = ReaderStudy()
        cls.w = cls.study.w

    def export(self, name):
        return services.trial_export(actor=self.w.statistician, trial=self.w.trial, name=name, channel="api")

    def test_every_export_parses_and_the_dictionary_describes_every_column(self):
        described = {}
        for v in exports.DICTIONARY:
            described.setdefault(v.export, []).append(v.name)
        for name in exports.TABLES:
            with self.subTest(export=name):
                header = next(csv.reader(io.StringIO(text(self.export(name)))))
                self.assertEqual(header, described[name])
        dictionary = rows_of(self.export("dictionary"))
        self.assertEqual(len(dictionary), len(exports.DICTIONARY))
        self.assertEqual({row["type"] for row in dictionary}, set(exports.PANDAS_TYPES))

    def test_reads_are_long_signed_only_and_labelled(self):
        rows = rows_of(self.export("reads"))
        signed = Read.objects.filter(case__subject__trial=self.w.trial, status="signed").count()
        self.assertEqual(len(rows), signed * 3)  # three questions answered per read
        self.assertEqual({row["reader"] for row in rows}, {"R01", "R02", "R03"})
        self.assertEqual({row["question"] for row in rows}, {"icdr_grade", "referable_dr", "confidence"})
        first = next(r for r in rows if r["reader"] == "R01" and r["question"] == "referable_dr")
        self.assertTrue(first["confidence"])
        self.assertEqual(first["seconds_on_case"], "30")
        self.assertEqual(first["signed_day"], "0")
        self.assertEqual(sum(r["calibration"] == "1" for r in rows), 3 * 3)

    def test_drafts_are_not_exported(self):
        Read.objects.filter(reader=self.w.reader2).update(status="draft")
        rows = rows_of(self.export("reads"))
        self.assertEqual({row["reader"] for row in rows}, {"R01", "R03"})

    def test_no_names_emails_uuids_or_dates_in_any_export(self):
        everything = "".join(text(self.export(name)) for name in EXPORT_NAMES)
        self.assertIn(self.w.subject1.pseudonym, everything)
        for reader in self.study.readers:
            self.assertNotIn(reader.email, everything)
            if reader.full_name:
                self.assertNotIn(reader.full_name, everything)
        self.assertIsNone(UUID.search(everything))
        self.assertIsNone(re.search(r"\b20\d\d-\d\d-\d\d", everything))

    def test_subjects_cases_and_reference(self):
        subjects = rows_of(self.export("subjects"))
        self.assertEqual(len(subjects), 4)
        self.assertEqual({s["site"] for s in subjects}, {"H01", "H02"})
        cases = rows_of(self.export("cases"))
        self.assertEqual(len(cases), 7)
        self.assertEqual(sum(c["calibration"] == "1" for c in cases), 1)
        reference = rows_of(self.export("reference"))
        self.assertEqual(sorted(r["referable"] for r in reference), ["0"] * 3 + ["1"] * 4)

    def test_predictions_carry_the_model_version(self):
        from diagnosis.models import InferenceJob, Prediction
        from tests.support.registry import register_small_models

        model, _ = register_small_models()
        case = self.w.case1
        job = InferenceJob.objects.create(case=case, model_version=model, status="succeeded")
        Prediction.objects.create(job=job, case=case, model_version=model, runtime_ms=1.0, referable_probability=0.75)
        rows = rows_of(self.export("predictions"))
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["model"], rows[0]["model_version"]), (model.name, model.version))
        self.assertEqual(rows[0]["referable_probability"], "0.75")
        self.assertTrue(rows[0]["case"].startswith(self.w.subject1.pseudonym))
        self.assertEqual(rows[0]["file"], "")  # a prediction made before the file it read was recorded

    def test_each_prediction_names_the_photograph_it_read(self):
        from diagnosis.models import InferenceJob, Prediction
        from tests.support import image_factories
        from tests.support.registry import register_small_models
        from trials.file_services import case_file_upload
        from trials.services import case_create

        model, _ = register_small_models()
        case = case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=30)
        photos = [
            case_file_upload(actor=self.w.coord1, case=case, data=image_factories.plain_png(400 + n, 300)).case_file
            for n in range(2)
        ]
        self.addCleanup(
            delete_stored, [name for p in photos for name in (p.content.name, p.preview.name, p.thumbnail.name)]
        )
        job = InferenceJob.objects.create(case=case, model_version=model, status="succeeded")
        for photo, grade in zip(photos, (1, 3), strict=True):
            Prediction.objects.create(
                job=job, case=case, case_file=photo, model_version=model, runtime_ms=1, grade=grade
            )
        for produce in (services.copy_rows, services.cursor_rows, portable.orm_rows):
            with self.subTest(produce=produce.__name__):
                rows = rows_of(produce("predictions", self.w.trial))
                self.assertEqual(
                    [(r["file"], r["grade"]) for r in rows],
                    [(p.sha256[:12], g) for p, g in zip(photos, ("1", "3"), strict=True)],
                )

    def test_analyze_reads_on_the_exported_csv_gives_the_aucs_computed_directly(self):
        exported = text(self.export("analysis_referable_dr"))
        table = parse_reads_csv(io.StringIO(exported))
        self.assertEqual(len(table.cases), 6)  # the calibration case is left out
        report = analyze(table)
        got = {row["reader"]: row["auc"] for row in report["auc_per_reader"]}
        expected = {}
        for r, label in enumerate(("R01", "R02", "R03")):
            truth, ratings = [], []
            for case_pk, answers in self.study.answers.items():
                answer, confidence = answers[r]
                truth.append(self.study.grade[case_pk] >= 2)
                ratings.append(50 + confidence / 2 if answer == "yes" else 50 - confidence / 2)
            expected[label] = auc_delong(truth, ratings).auc
        self.assertEqual(got.keys(), expected.keys())
        for label in expected:
            self.assertAlmostEqual(got[label], expected[label], places=12)
        self.assertGreater(len(set(expected.values())), 1)  # readers differ: a mix-up of readers would show

    def test_the_analyze_reads_command_reads_the_exported_file(self):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "analysis.csv"
            path.write_bytes(b"".join(self.export("analysis_referable_dr")))
            out = io.StringIO()
            call_command("analyze_reads", str(path), "--json", stdout=out)
        self.assertIn('"auc_per_reader"', out.getvalue())

    def test_copy_and_cursor_give_the_same_csv(self):
        for name in exports.TABLES:
            with self.subTest(export=name):
                copied = text(services.copy_rows(name, self.w.trial))
                fetched = text(services.cursor_rows(name, self.w.trial))
                self.assertEqual(copied, fetched)

    def awkward_values(self):
        """Values where COPY's formatting is easy to miss: an empty string, a comma, a quote, a line break,
        floats with and without a fraction, JSON true, null and numbers, a glaucoma reference, a withdrawal."""
        from datetime import timedelta

        from diagnosis.models import InferenceJob, Prediction
        from reading.models import ReaderAssignment
        from tests.support.registry import register_small_models
        from trials.models import ReferenceStandard, Subject

        model, _ = register_small_models()
        for case, referable, glaucoma in ((self.w.case1, 1.0, 0.1 + 0.2), (self.w.case2, 0.0, None)):
            job = InferenceJob.objects.create(case=case, model_version=model, status="succeeded")
            Prediction.objects.create(
                job=job,
                case=case,
                model_version=model,
                runtime_ms=1.0,
                grade=2,
                referable_probability=referable,
                glaucoma_probability=glaucoma,
            )
        ReaderAssignment.objects.filter(reader=self.w.reader2).update(group="")
        ReaderAssignment.objects.filter(reader=self.w.reader3).update(group='senior, "consultant"\nteam')
        reads = Read.objects.filter(reader=self.w.reader, status="signed").exclude(case=self.study.calibration)
        read = reads.order_by("case__subject__pseudonym", "case__visit_day", "case__laterality").first()
        read.answers = {**read.answers, "note": "a, b", "flag": True, "empty": "", "missing": None, "n": 2.5}
        read.confidences = {**read.confidences, "glaucoma": 33.3}
        read.save()
        ReferenceStandard.objects.filter(case=read.case).update(glaucoma="yes")
        Read.objects.filter(pk=read.pk).update(answers={**read.answers, "glaucoma": "yes"})
        subject = Subject.objects.filter(trial=self.w.trial).first()
        Subject.objects.filter(pk=subject.pk).update(
            status="withdrawn", withdrawn_at=subject.enrolled_at + timedelta(days=3, hours=23)
        )

    def test_the_portable_path_gives_the_bytes_of_copy(self):
        self.awkward_values()
        for name in exports.TABLES:
            with self.subTest(export=name):
                copied = b"".join(services.copy_rows(name, self.w.trial))
                ported = b"".join(portable.orm_rows(name, self.w.trial))
                self.assertGreater(copied.count(b"\n"), 1, "the study exports rows")
                self.assertEqual(ported, copied)

    def test_the_path_follows_the_database_vendor(self):
        expected = {name: b"".join(services.copy_rows(name, self.w.trial)) for name in exports.TABLES}
        not_here = mock.Mock(side_effect=AssertionError("the wrong path for this database"))
        with (
            mock.patch.object(services, "connection", SimpleNamespace(vendor="sqlite")),
            mock.patch.object(services, "copy_rows", not_here),
        ):
            for name in exports.TABLES:
                self.assertEqual(b"".join(self.export(name)), expected[name], name)
            self.assertIn(b"R01", b"".join(self.export("dictionary")) + expected["reads"])
        with mock.patch.object(portable, "orm_rows", not_here):
            for name in exports.TABLES:
                self.assertEqual(b"".join(self.export(name)), expected[name], name)

    def test_the_portable_path_streams(self):
        rows = portable.orm_rows("reads", self.w.trial)
        with mock.patch.object(portable, "CHUNK_CHARS", 200):
            chunks = list(portable.orm_rows("reads", self.w.trial))
        self.assertGreater(len(chunks), 3)
        self.assertTrue(all(len(c) < 200 + 400 for c in chunks))
        self.assertEqual(b"".join(chunks), b"".join(rows))

    def test_floats_are_written_as_postgresql_writes_them(self):
        from django.db import connection

        values = [1.0, 0.0, -0.0, 0.1 + 0.2, 97.5, 1e-05, 0.0001, 1e15, 1.5e15, 1e16, 123456789012345.6, -2.5e-300]
        with connection.cursor() as cursor:
            for value in values:
                cursor.execute("SELECT (%s::float8)::text", [value])
                self.assertEqual(portable.pg_float(value), cursor.fetchone()[0], value)

    def test_a_large_export_comes_in_bounded_chunks(self):
        chunks = list(services.copy_rows("reads", self.w.trial))
        self.assertTrue(all(len(c) <= services.CHUNK_BYTES for c in chunks))


class ExportAuditTests(TestCase):
    def setUp(self):
        self.w = ReadingWorld()

    def test_each_export_writes_one_audit_event(self):
        before = AuditEvent.objects.filter(action="trial.export").count()
        b"".join(services.trial_export(actor=self.w.monitor, trial=self.w.trial, name="reads", channel="page"))
        event = AuditEvent.objects.filter(action="trial.export").latest("seq")
        self.assertEqual(AuditEvent.objects.filter(action="trial.export").count(), before + 1)
        self.assertEqual(event.changes, {"export": "reads", "channel": "page"})
        self.assertEqual(event.actor, self.w.monitor)
        self.assertEqual(event.trial_ref, self.w.trial.slug)

    def test_a_refused_export_records_nothing(self):
        from django.core.exceptions import PermissionDenied, ValidationError

        with self.assertRaises(PermissionDenied):
            services.trial_export(actor=self.w.reader, trial=self.w.trial, name="reads", channel="api")
        with self.assertRaises(ValidationError):
            services.trial_export(actor=self.w.manager, trial=self.w.trial, name="users", channel="api")
        self.assertFalse(AuditEvent.objects.filter(action="trial.export").exists())


class ExportAccessTests(TestCase):
    """Every export endpoint (page and API) as every role."""

    @classmethod
    def setUpTestData(cls):
        cls.w = ReadingWorld()
        # A manager who also reads in the trial is blinded: refused too.
        from platform_core.accounts.models import Role
        from tests.support.factories import MembershipFactory

        cls.reading_statistician = cls.w.reader2
        MembershipFactory(user=cls.reading_statistician, hospital=cls.w.h2, role=Role.STATISTICIAN)

    def expected(self):
        w = self.w
        return {
            "manager": (w.manager, 200),
            "statistician": (w.statistician, 200),
            "monitor": (w.monitor, 200),
            "coordinator": (w.coord1, 403),
            "other coordinator": (w.coord2, 403),
            "outsider": (w.outsider, 403),
            "reader": (w.reader, 403),
            "statistician who reads": (self.reading_statistician, 403),
        }

    def test_api_endpoints_for_every_role(self):
        for name in EXPORT_NAMES:
            url = f"/api/v1/evaluation/trials/{self.w.trial.slug}/exports/{name}.csv"
            self.assertEqual(APIClient().get(url).status_code, 401, url)
            for role, (user, status) in self.expected().items():
                with self.subTest(export=name, role=role):
                    api = APIClient()
                    api.force_authenticate(user)
                    response = api.get(url)
                    if role == "outsider":
                        status = 403  # no export role at all: refused before the trial is looked up
                    self.assertEqual(response.status_code, status)
                    if status == 200:
                        self.assertEqual(response["Content-Type"], "text/csv; charset=utf-8")
                        header = next(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
                        self.assertTrue(header)

    def test_page_and_downloads_for_every_role(self):
        page = f"/evaluation/trials/{self.w.trial.slug}/exports/"
        download = page + "reads.csv"
        self.assertEqual(self.client.get(page).status_code, 302)  # anonymous: to the login page
        self.assertEqual(self.client.get(download).status_code, 302)
        for role, (user, status) in self.expected().items():
            with self.subTest(role=role):
                self.client.force_login(user)
                self.assertEqual(self.client.get(page).status_code, status)
                self.assertEqual(self.client.get(download).status_code, status)
        self.client.force_login(self.w.statistician)
        response = self.client.get(page)
        self.assertContains(response, f"/evaluation/trials/{self.w.trial.slug}/exports/analysis_referable_dr.csv")
        self.assertContains(response, "pd.read_csv")
        self.assertContains(response, "read.csv")
        self.assertEqual(self.client.get(page + "users.csv").status_code, 404)

    def test_the_pages_loader_snippets_name_the_files_the_page_serves(self):
        import re

        self.client.force_login(self.w.statistician)
        page = self.client.get(f"/evaluation/trials/{self.w.trial.slug}/exports/").content.decode()
        prefix = re.search(r"PREFIX = &quot;([^&]*)&quot;", page).group(1)
        self.assertIn(f"prefix &lt;- &quot;{prefix}&quot;", page)
        for name in ("dictionary", *EXPORT_NAMES):
            response = self.client.get(f"/evaluation/trials/{self.w.trial.slug}/exports/{name}.csv")
            self.assertIn(f'filename="{prefix}{name}.csv"', response["Content-Disposition"])

    def test_the_trial_page_links_to_the_exports_for_allowed_roles_only(self):
        for user, shown in ((self.w.statistician, True), (self.w.coord1, False), (self.w.reader, False)):
            self.client.force_login(user)
            response = self.client.get(f"/trials/{self.w.trial.slug}/")
            self.assertEqual('data-testid="exports-link"' in response.content.decode(), shown, user.email)

    def test_the_schema_documents_every_export(self):
        self.client.force_login(self.w.manager)
        schema = self.client.get("/api/schema/").content.decode()
        for name in EXPORT_NAMES:
            self.assertIn(f"/api/v1/evaluation/trials/{{slug}}/exports/{name}.csv", schema)
            self.assertIn(f"trial_export_{name}", schema)


class ExportCommandTests(TestCase):
    def test_the_command_writes_every_export_the_dictionary_and_the_loaders(self):
        w = ReadingWorld()
        w.signed_read(w.reader)
        with tempfile.TemporaryDirectory() as folder:
            out = io.StringIO()
            call_command("export_trial", "--trial", w.trial.slug, "--out", folder, stdout=out)
            files = sorted(p.name for p in Path(folder).iterdir())
            self.assertEqual(files, sorted([f"{n}.csv" for n in EXPORT_NAMES] + ["load_visus.R", "load_visus.py"]))
            reads = list(csv.DictReader((Path(folder) / "reads.csv").open()))
        self.assertEqual({r["reader"] for r in reads}, {"R01"})
        events = AuditEvent.objects.filter(action="trial.export", changes__channel="command")
        self.assertEqual(events.count(), len(EXPORT_NAMES))
        self.assertIsNone(events.first().actor)

    def test_an_unknown_trial_is_a_clear_error(self):
        with self.assertRaisesMessage(CommandError, "No trial with slug 'nope'"):
            call_command("export_trial", "--trial", "nope", "--out", tempfile.gettempdir())
