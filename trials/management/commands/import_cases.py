"""Bulk import of case files through the same pipeline as the browser.

    python manage.py import_cases --trial SLUG --site CODE PATH

PATH is a folder or a .zip. A ``manifest.csv`` at its top (columns ``file,subject,eye,visit_day``) maps each
file to a subject pseudonym, eye and visit day; without one, the layout ``SUBJECT/EYE/file`` is used (visit
day from --visit-day, default 0). Cases are created when missing. One line per file; exit code 1 if any
file failed.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from platform_core.accounts.models import User
from platform_core.errors import ApplicationError
from trials.file_services import case_file_upload
from trials.models import Case, Subject, Trial, TrialSite
from trials.selectors import coordinated_sites
from trials.services import case_create
from trials.uploads.errors import UploadRejected

logger = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ["file", "subject", "eye", "visit_day"]
IGNORED = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class Entry:
    name: str  # path inside the import, POSIX style
    read: Callable[[], bytes]
    size: int
    problem: str = ""


def safe_member_name(name: str) -> str | None:
    """The normalised relative path, or None for absolute paths, '..', drive letters and backslashes."""
    if not name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in ("..", "") for part in parts):
        return None
    return str(PurePosixPath(*[p for p in parts if p != "."]))


def folder_entries(root: Path, max_bytes: int) -> Iterator[Entry]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            rel = path.relative_to(root).as_posix()
            if filename in IGNORED:
                continue
            if path.is_symlink():
                yield Entry(rel, lambda: b"", 0, "symbolic links are not followed; copy the file itself")
                continue
            size = path.stat().st_size
            if size > max_bytes:  # refused before a byte is read into memory
                yield Entry(rel, lambda: b"", size, f"larger than the upload limit of {max_bytes // 2**20} MB")
                continue
            yield Entry(rel, path.read_bytes, size)


def zip_entries(archive: zipfile.ZipFile, max_bytes: int) -> Iterator[Entry]:
    for info in archive.infolist():
        if info.is_dir() or PurePosixPath(info.filename).name in IGNORED or info.filename.startswith("__MACOSX/"):
            continue
        name = safe_member_name(info.filename)
        if name is None:
            yield Entry(info.filename, lambda: b"", 0, "unsafe path in the zip (absolute or with '..'): refused")
            continue
        if info.flag_bits & 0x1:
            yield Entry(name, lambda: b"", 0, "the zip member is encrypted; unpack it first")
            continue
        if info.file_size > max_bytes:
            yield Entry(name, lambda: b"", info.file_size, f"larger than the upload limit of {max_bytes // 2**20} MB")
            continue
        yield Entry(name, partial(_read_member, archive, info, max_bytes), info.file_size)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    # Read with a cap: the size in the directory can lie (zip bombs). A damaged member (bad CRC, lying deflate
    # data, a truncated archive, an unsupported compression) is that file's refusal, not the end of the import.
    try:
        with archive.open(info) as handle:
            data = handle.read(max_bytes + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise UploadRejected(
            f"The zip member is damaged and was not imported ({type(exc).__name__}: {exc}). "
            "Re-create the zip from the original files.",
            "damaged_zip_member",
        ) from None
    if len(data) > max_bytes:
        raise UploadRejected(f"The file is larger than the upload limit of {max_bytes // 2**20} MB.", "too_large")
    return data


class Command(BaseCommand):
    help = "Import case files (folder or zip, optional manifest.csv) through the de-identification pipeline."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--trial", required=True, help="trial slug")
        parser.add_argument("--site", required=True, help="hospital code of the site")
        parser.add_argument("--visit-day", type=int, default=0, help="visit day when there is no manifest")
        parser.add_argument(
            "--user",
            required=True,
            help="email of the site's coordinator who imports (recorded as the uploader in the audit trail)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        trial = Trial.objects.filter(slug=options["trial"]).first()
        if trial is None:
            raise CommandError(f"No trial with slug {options['trial']!r}.")
        site = TrialSite.objects.select_related("hospital").filter(trial=trial, hospital__code=options["site"]).first()
        if site is None:
            raise CommandError(f"{options['site']} is not a site of trial {trial.slug}.")
        actor = User.objects.filter(email__iexact=options["user"], is_active=True).first()
        if actor is None:
            raise CommandError(f"No active user {options['user']!r}.")
        if not coordinated_sites(user=actor, trial=trial).filter(pk=site.pk).exists():
            raise CommandError(
                f"{actor.email} is not a coordinator of site {site.hospital.code} in trial {trial.slug}: "
                "every imported file is recorded as uploaded by a coordinator of its site."
            )
        path = Path(str(options["path"]))
        max_bytes = settings.VISUS_MAX_UPLOAD_MB * 1024 * 1024
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        if path.is_dir():
            entries = list(folder_entries(path, max_bytes))
            self._run(entries, trial, site, actor, options)
        elif zipfile.is_zipfile(path):
            try:
                archive = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise CommandError(f"{path} is a damaged zip file ({exc}); nothing was imported.") from None
            with archive:
                self._run(list(zip_entries(archive, max_bytes)), trial, site, actor, options)
        else:
            raise CommandError(f"{path} is neither a folder nor a zip file.")

    def _run(self, entries: list[Entry], trial: Trial, site: TrialSite, actor: User, options: dict) -> None:
        manifest = next((e for e in entries if e.name == MANIFEST), None)
        files = [e for e in entries if e is not manifest]
        if manifest is not None:
            targets = self._manifest(manifest, files)
        else:
            targets = {e.name: self._from_layout(e.name, options["visit_day"]) for e in files}
        counts = {"accepted": 0, "duplicate": 0, "failed": 0}
        for entry in files:
            try:
                outcome = self._one(entry, targets.get(entry.name), trial, site, actor)
            except Exception as exc:  # one file's unexpected failure is reported; the rest are still tried
                logger.exception("import_cases: %s failed", entry.name)
                outcome = f"REJECTED: unexpected error ({type(exc).__name__}); the file was not imported"
            word, _, detail = outcome.partition(":")
            counts["failed" if word == "REJECTED" else word.lower()] += 1
            self.stdout.write(f"{word:<10} {entry.name}:{detail}")
        self.stdout.write(
            f"{len(files)} file(s): {counts['accepted']} accepted, {counts['duplicate']} duplicate, "
            f"{counts['failed']} failed"
        )
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} file(s) failed", returncode=1)

    @staticmethod
    def _from_layout(name: str, visit_day: int) -> tuple[str, str, int] | str:
        parts = PurePosixPath(name).parts
        if len(parts) != 3:
            return "not in the SUBJECT/EYE/file layout (or add a manifest.csv)"
        return parts[0], parts[1].upper(), visit_day

    def _manifest(self, manifest: Entry, files: list[Entry]) -> dict[str, tuple[str, str, int] | str]:
        try:
            text = manifest.read().decode("utf-8-sig")
        except (UnicodeDecodeError, UploadRejected) as exc:
            raise CommandError("manifest.csv is not UTF-8 text.") from exc
        reader = csv.DictReader(io.StringIO(text))
        if [c.strip().lower() for c in reader.fieldnames or []] != MANIFEST_COLUMNS:
            raise CommandError(f"manifest.csv must have the columns {','.join(MANIFEST_COLUMNS)}.")
        targets: dict[str, tuple[str, str, int] | str] = {}
        for n, row in enumerate(reader, start=2):
            name = safe_member_name((row.get("file") or "").strip())
            if name is None:
                raise CommandError(f"manifest.csv line {n}: unsafe or empty file name.")
            try:
                day = int(row.get("visit_day") or "")
            except ValueError:
                targets[name] = f"manifest line {n}: visit_day must be a whole number"
                continue
            targets[name] = ((row.get("subject") or "").strip(), (row.get("eye") or "").strip().upper(), day)
        for entry in files:
            targets.setdefault(entry.name, "not listed in manifest.csv")
        missing = sorted(set(targets) - {e.name for e in files})
        for name in missing:
            self.stderr.write(f"manifest.csv lists {name}, which is not in the import")
        return targets

    def _one(
        self, entry: Entry, target: tuple[str, str, int] | str | None, trial: Trial, site: TrialSite, actor: User | None
    ) -> str:
        if entry.problem:
            return f"REJECTED: {entry.problem}"
        if target is None or isinstance(target, str):
            return f"REJECTED: {target or 'no case for this file'}"
        pseudonym, eye, day = target
        subject = Subject.objects.filter(trial=trial, site=site, pseudonym=pseudonym).first()
        if subject is None:
            return f"REJECTED: no subject {pseudonym} at site {site.hospital.code} in this trial"
        if eye not in ("OD", "OS"):
            return f"REJECTED: eye must be OD or OS, not {eye!r}"
        try:
            # A case made for this file exists only if the file is kept: a refusal rolls both back.
            with transaction.atomic():
                case = Case.objects.filter(subject=subject, laterality=eye, visit_day=day).first()
                if case is None:
                    case = case_create(actor=actor, subject=subject, laterality=eye, visit_day=day)
                result = case_file_upload(actor=actor, case=case, data=entry.read(), source="import_cases")
        except UploadRejected as exc:
            return f"REJECTED: {exc.message}"
        except ApplicationError as exc:
            return f"REJECTED: {exc.message}"
        except ValidationError as exc:
            return f"REJECTED: {' '.join(exc.messages)}"
        except OSError:
            return "REJECTED: the file could not be read"
        if result.outcome == "duplicate":
            return f"DUPLICATE: already in {pseudonym} {eye} day {day}"
        return f"ACCEPTED: {pseudonym} {eye} day {day} ({result.case_file.get_modality_display()})"
