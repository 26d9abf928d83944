import io
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase

from tests.support import image_factories
from tests.support.factories import TrialWorld
from tests.support.storage import stored_names
from tests.support.uploads import vf_csv
from trials.models import Case, CaseFile


def run(path, **options):
    options.setdefault("user", "coord1@visus.example")  # TrialWorld's coordinator at H01
    out = io.StringIO()
    code = 0
    try:
        call_command("import_cases", str(path), stdout=out, stderr=out, **options)
    except CommandError as exc:
        code = exc.returncode
        out.write(str(exc))
    return code, out.getvalue()


class ImportCasesTests(TestCase):
    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.before = stored_names()
        self.tmp = Path(tempfile.mkdtemp(prefix="visus-import-"))

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

    def test_folder_with_manifest_creates_cases_and_reports_each_file(self):
        (self.tmp / "a.png").write_bytes(image_factories.plain_png(400, 400))
        (self.tmp / "b.csv").write_bytes(vf_csv("OS"))
        (self.tmp / "manifest.csv").write_text(
            "file,subject,eye,visit_day\na.png,DR01-H01-0001,OD,30\nb.csv,DR01-H01-0001,OS,30\n"
        )
        code, out = run(self.tmp, trial="dr-trial", site="H01")
        self.assertEqual(code, 0, out)
        self.assertIn("ACCEPTED   a.png: DR01-H01-0001 OD day 30", out)
        self.assertIn("ACCEPTED   b.csv: DR01-H01-0001 OS day 30", out)
        self.assertIn("2 file(s): 2 accepted, 0 duplicate, 0 failed", out)
        self.assertEqual(Case.objects.filter(subject=self.w.subject1, visit_day=30).count(), 2)
        code, out = run(self.tmp, trial="dr-trial", site="H01")
        self.assertEqual(code, 0)
        self.assertIn("DUPLICATE  a.png", out)

    def test_layout_without_manifest(self):
        folder = self.tmp / "DR01-H01-0001" / "od"
        folder.mkdir(parents=True)
        (folder / "photo.png").write_bytes(image_factories.plain_png(400, 400))
        code, out = run(self.tmp, trial="dr-trial", site="H01", visit_day=7)
        self.assertEqual(code, 0, out)
        self.assertIn("ACCEPTED   DR01-H01-0001/od/photo.png: DR01-H01-0001 OD day 7", out)

    def test_failures_are_reported_per_file_and_exit_with_1(self):
        (self.tmp / "good.png").write_bytes(image_factories.plain_png(400, 400))
        (self.tmp / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
        (self.tmp / "other-site.png").write_bytes(image_factories.plain_png(401, 400))
        (self.tmp / "stray.png").write_bytes(image_factories.plain_png(402, 400))
        (self.tmp / "manifest.csv").write_text(
            "file,subject,eye,visit_day\ngood.png,DR01-H01-0001,OD,0\ncorrupt.jpg,DR01-H01-0001,OD,0\n"
            "other-site.png,DR01-H02-0001,OS,0\n"
        )
        code, out = run(self.tmp, trial="dr-trial", site="H01")
        self.assertEqual(code, 1)
        self.assertIn("ACCEPTED   good.png", out)
        self.assertRegex(out, r"REJECTED   corrupt.jpg: .*truncated|damaged")
        self.assertIn("REJECTED   other-site.png: no subject DR01-H02-0001 at site H01", out)
        self.assertIn("REJECTED   stray.png: not listed in manifest.csv", out)
        self.assertEqual(CaseFile.objects.count(), 1)

    def test_zip_with_path_tricks_is_refused_member_by_member(self):
        archive = self.tmp / "batch.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("DR01-H01-0001/OD/ok.png", image_factories.plain_png(400, 400))
            zf.writestr("../../etc/evil.png", image_factories.plain_png(401, 400))
            zf.writestr("/abs/evil.png", image_factories.plain_png(402, 400))
        code, out = run(archive, trial="dr-trial", site="H01")
        self.assertEqual(code, 1, out)
        self.assertIn("ACCEPTED   DR01-H01-0001/OD/ok.png", out)
        self.assertEqual(out.count("unsafe path in the zip"), 2)
        self.assertEqual(CaseFile.objects.count(), 1)

    def test_manifest_with_unsafe_names_stops_the_import(self):
        (self.tmp / "manifest.csv").write_text("file,subject,eye,visit_day\n../x.png,DR01-H01-0001,OD,0\n")
        code, out = run(self.tmp, trial="dr-trial", site="H01")
        self.assertEqual(code, 1)
        self.assertIn("unsafe or empty file name", out)

    def test_unknown_trial_or_site_is_an_error(self):
        self.assertIn("No trial", run(self.tmp, trial="nope", site="H01")[1])
        self.assertIn("not a site", run(self.tmp, trial="dr-trial", site="H77")[1])

    def test_a_refused_file_leaves_no_case_or_audit_event_behind(self):
        from platform_core.audit.models import AuditEvent

        (self.tmp / "broken.png").write_bytes(image_factories.plain_png(400, 400)[:60])
        (self.tmp / "manifest.csv").write_text("file,subject,eye,visit_day\nbroken.png,DR01-H01-0001,OD,99\n")
        cases, events = Case.objects.count(), AuditEvent.objects.count()
        code, out = run(self.tmp, trial="dr-trial", site="H01")
        self.assertEqual(code, 1)
        self.assertIn("REJECTED   broken.png", out)
        self.assertEqual((Case.objects.count(), AuditEvent.objects.count()), (cases, events))
        self.assertEqual(stored_names() - self.before, set())

    def test_a_file_over_the_size_limit_is_refused_before_it_is_read(self):
        (self.tmp / "DR01-H01-0001" / "OD").mkdir(parents=True)
        big = self.tmp / "DR01-H01-0001" / "OD" / "huge.png"
        big.write_bytes(image_factories.plain_png(400, 400))
        with (
            self.settings(VISUS_MAX_UPLOAD_MB=0),
            mock.patch("pathlib.Path.read_bytes", side_effect=AssertionError("read before the size check")),
        ):
            code, out = run(self.tmp, trial="dr-trial", site="H01", visit_day=3)
        self.assertEqual(code, 1)
        self.assertIn("larger than the upload limit of 0 MB", out)
        self.assertFalse(Case.objects.filter(visit_day=3).exists())


def _member_data_offset(archive_bytes: bytes, name: str) -> int:
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
        info = zf.getinfo(name)
    header = info.header_offset
    name_len = int.from_bytes(archive_bytes[header + 26 : header + 28], "little")
    extra_len = int.from_bytes(archive_bytes[header + 28 : header + 30], "little")
    return header + 30 + name_len + extra_len


class DamagedZipTests(TestCase):
    """A damaged member is that file's refusal: earlier files stay, later ones are tried, a summary is printed."""

    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.before = stored_names()
        self.tmp = Path(tempfile.mkdtemp(prefix="visus-import-"))

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

    def archive(self, compression: int) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
            zf.writestr("DR01-H01-0001/OS/a.csv", vf_csv("OS"))
            zf.writestr("DR01-H01-0001/OD/b.csv", vf_csv("OD"))
            zf.writestr("DR01-H01-0001/OD/c.csv", vf_csv("OD").replace(b"\n", b"\r\n"))
        return buffer.getvalue()

    def damage(self, data: bytes, name: str, at: int = 40) -> Path:
        offset = _member_data_offset(data, name) + at
        damaged = bytearray(data)
        damaged[offset : offset + 8] = bytes(b ^ 0x5A for b in damaged[offset : offset + 8])
        path = self.tmp / "import.zip"
        path.write_bytes(bytes(damaged))
        return path

    def check(self, path: Path) -> str:
        code, out = run(path, trial="dr-trial", site="H01")
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r"ACCEPTED +DR01-H01-0001/OS/a.csv")
        self.assertRegex(out, r"REJECTED +DR01-H01-0001/OD/b.csv: The zip member is damaged")
        self.assertRegex(out, r"(ACCEPTED|DUPLICATE) +DR01-H01-0001/OD/c.csv")
        self.assertIn("3 file(s):", out)
        self.assertIn("1 failed", out)
        self.assertNotIn("Traceback", out)
        return out

    def test_a_bad_crc_is_refused_for_that_file_only(self):
        path = self.damage(self.archive(zipfile.ZIP_STORED), "DR01-H01-0001/OD/b.csv")
        out = self.check(path)
        self.assertIn("Bad CRC-32", out)
        self.assertEqual(CaseFile.objects.filter(case__laterality="OS").count(), 1)

    def test_lying_deflate_data_is_refused_for_that_file_only(self):
        path = self.damage(self.archive(zipfile.ZIP_DEFLATED), "DR01-H01-0001/OD/b.csv", at=2)
        self.check(path)

    def test_a_damaged_central_directory_is_one_clear_error(self):
        data = self.archive(zipfile.ZIP_STORED)
        path = self.tmp / "import.zip"
        path.write_bytes(data[:-30] + b"\0" * 30)
        code, out = run(path, trial="dr-trial", site="H01")
        self.assertEqual(code, 1)
        self.assertNotIn("Traceback", out)
        self.assertFalse(CaseFile.objects.exists())


class ImportUserTests(TestCase):
    """Every imported file is attributable: --user is required and must coordinate the site."""

    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.before = stored_names()
        self.tmp = Path(tempfile.mkdtemp(prefix="visus-import-"))
        (self.tmp / "DR01-H01-0001" / "OS").mkdir(parents=True)
        (self.tmp / "DR01-H01-0001" / "OS" / "a.csv").write_bytes(vf_csv("OS"))

    def tearDown(self):
        for name in stored_names() - self.before:
            default_storage.delete(name)

    def test_the_user_is_required(self):
        with self.assertRaisesMessage(CommandError, "--user"):
            call_command("import_cases", str(self.tmp), trial="dr-trial", site="H01", stdout=io.StringIO())

    def test_a_coordinator_of_another_site_is_refused(self):
        code, out = run(self.tmp, trial="dr-trial", site="H01", user="coord2@visus.example")
        self.assertEqual(code, 1)
        self.assertIn("is not a coordinator of site H01", out)
        self.assertFalse(CaseFile.objects.exists())

    def test_the_audit_trail_names_the_importing_coordinator(self):
        from platform_core.audit.models import AuditEvent

        code, out = run(self.tmp, trial="dr-trial", site="H01")
        self.assertEqual(code, 0, out)
        uploads = AuditEvent.objects.filter(action__startswith="case_file.")
        self.assertTrue(uploads.exists())
        self.assertEqual(set(uploads.values_list("actor_email", flat=True)), {"coord1@visus.example"})
