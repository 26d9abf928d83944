"""Exports for statisticians, as a service: check who asks, write the audit event, then stream the CSV.

On PostgreSQL the rows leave the database through ``COPY (SELECT ...) TO STDOUT WITH CSV HEADER``
(psycopg2's ``copy_expert``) into a spooled temporary file that stays in memory up to ``SPOOL_BYTES`` and
spills to disk beyond, then the file is streamed in ``CHUNK_BYTES`` pieces: memory stays flat whatever the
size of the trial (``tests/benchmarks/bench_exports.py`` measures it). On any other database (SQLite in
``make run``) the same bytes come from ``evaluation.portable.orm_rows`` (the ORM, ``.iterator()``): see
``export_chunks``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from evaluation import exports, portable
from evaluation.selectors import may_export
from platform_core.accounts.models import User
from platform_core.audit.services import audit_record
from trials.models import Trial

CHUNK_BYTES = 64 * 1024
SPOOL_BYTES = 8 * 1024 * 1024
EXPORT_NAMES = (*exports.TABLES, "dictionary")
CHANNELS = ("page", "api", "command")


def _copy_sql(name: str, trial: Trial) -> str:
    with connection.cursor() as cursor:
        select = cursor.mogrify(exports.sql_of(name), {"trial": trial.pk}).decode()
    return f"COPY ({select}) TO STDOUT WITH CSV HEADER"


def copy_rows(name: str, trial: Trial) -> Iterator[bytes]:
    """The export's CSV through PostgreSQL ``COPY``, in chunks of at most ``CHUNK_BYTES``."""
    sql = _copy_sql(name, trial)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b") as spool:
        with connection.cursor() as cursor:
            cursor.cursor.copy_expert(sql, spool)  # the psycopg2 cursor under Django's wrapper
        spool.seek(0)
        while chunk := spool.read(CHUNK_BYTES):
            yield chunk


def export_chunks(name: str, trial: Trial) -> Iterator[bytes]:
    """The export's CSV: ``COPY`` on PostgreSQL, the ORM (``evaluation.portable``) on any other database."""
    if name == "dictionary":
        return iter([exports.dictionary_csv().encode()])
    if connection.vendor == "postgresql":
        return copy_rows(name, trial)
    return portable.orm_rows(name, trial)


def cursor_rows(name: str, trial: Trial, batch: int = 2000) -> Iterator[bytes]:
    """The same CSV without ``COPY``: the SELECT's rows fetched in batches and written in Python as COPY writes
    them (``evaluation.portable.csv_line``): the benchmark's comparison."""
    with connection.chunked_cursor() as cursor:  # a server-side cursor on PostgreSQL: rows come in batches
        cursor.execute(exports.sql_of(name), {"trial": trial.pk})
        rows = cursor.fetchmany(batch)  # a server-side cursor describes its columns after the first fetch
        yield portable.csv_line(column[0] for column in cursor.description).encode()
        while rows:
            yield "".join(portable.csv_line(row) for row in rows).encode()
            rows = cursor.fetchmany(batch)


@transaction.atomic
def trial_export(*, actor: User | None, trial: Trial, name: str, channel: str) -> Iterator[bytes]:
    """Record the export in the audit trail and return its CSV as an iterator of bytes.

    ``actor`` None is the command line (an operator on the server). A user must be allowed by
    ``evaluation.selectors.may_export``. Refusals raise before anything is recorded or read.
    """
    if name not in EXPORT_NAMES:
        raise ValidationError({"name": f"No export named {name!r}. Exports: {', '.join(EXPORT_NAMES)}."})
    if channel not in CHANNELS:
        raise ValidationError({"channel": f"Unknown channel {channel!r}."})
    if actor is not None and not may_export(actor, trial):
        raise PermissionDenied("Only the trial's managers, statisticians and monitors (who do not read) may export.")
    audit_record(
        actor=actor,
        action="trial.export",
        obj=trial,
        object_repr=f"{trial.slug} {name}",
        changes={"export": name, "channel": channel},
        trial_ref=trial.slug,
    )
    return export_chunks(name, trial)


def trial_export_to_folder(*, trial: Trial, out: Path) -> list[Path]:
    """Every export of the trial, the dictionary and the R and pandas loaders, written into ``out`` (command line;
    each export audited). Files are written under a temporary name and renamed, so a failure leaves no partial
    CSV behind."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in EXPORT_NAMES:
        target = out / f"{name}.csv"
        partial = out / f".{name}.csv.partial"
        try:
            with partial.open("wb") as handle:
                for chunk in trial_export(actor=None, trial=trial, name=name, channel="command"):
                    handle.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        written.append(target)
    for filename, text in (("load_visus.py", exports.pandas_snippet()), ("load_visus.R", exports.r_snippet())):
        (out / filename).write_text(text, encoding="utf-8")
        written.append(out / filename)
    return written
