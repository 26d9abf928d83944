"""Each reader assignment's queue of cases in the reader's own order (``QueuedCase``), kept as cases and reads
change, so that next case walks an index instead of hashing every case of the trial on each request.

The order is the one next case always had: the case id hashed with the assignment's seed (``ReaderOrder``). The
queue only says which cases may come up; whether one is servable now is checked by ``servable_cases`` at each
walk. Every function here runs inside the caller's transaction: one INSERT ... SELECT or DELETE each, whatever
the number of cases.

Two changes that each read what the other writes must not both miss the other: a reader assigned while a case
becomes complete (or while they sign the unaided read that queues it for the aided phase), a case given back
while a queue is filled. Under READ COMMITTED each INSERT ... SELECT sees only what was committed when it began,
so both would commit and the case would wait in no queue (next case 204 while the worklist counts it). So each
function here first takes ``queue_lock``, the audit chain's lock, which every audited change holds from its first
event to its commit: whichever of the two takes it second waits for the other's commit and its INSERT ... SELECT
sees it. Every caller is an audited change that holds that lock already (or takes it a statement or two later),
so it adds no wait and no new lock order (``QueueRaceTests``)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import connection
from django.db.models import BigIntegerField, Count, Exists, F, Func, OuterRef, Q, QuerySet, UUIDField, Value

from platform_core.audit.services import audit_chain_lock
from reading.models import CalibrationCase, Phase, QueuedCase, Read, ReaderAssignment, ReadStatus
from trials.models import Case, CaseStatus

SQLITE_RANK = "visus_reader_rank"


class ReaderOrder(Func):
    """A case's place in one reader's order: a 64-bit hash of the case id keyed with the assignment's seed (an int
    or an expression such as ``F("seed")``).

    On PostgreSQL ``uuid_hash_extended(id, seed)``, the seeded 64-bit hash that hash partitioning relies on (so it is
    kept stable across PostgreSQL versions). Elsewhere (SQLite) the first 64 bits of MD5 of "seed:id" as a signed
    integer (``sqlite_reader_rank``, registered on each SQLite connection): the order of the MD5 text."""

    output_field = BigIntegerField()

    def __init__(self, case_id: Any, seed: Any) -> None:
        super().__init__(case_id, seed if hasattr(seed, "resolve_expression") else Value(seed))

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        column, column_params = compiler.compile(self.source_expressions[0])
        seed, seed_params = compiler.compile(self.source_expressions[1])
        return f"{SQLITE_RANK}({seed}, {column})", (*seed_params, *column_params)

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        column, column_params = compiler.compile(self.source_expressions[0])
        seed, seed_params = compiler.compile(self.source_expressions[1])
        return f"uuid_hash_extended({column}, ({seed})::bigint)", (*column_params, *seed_params)


def sqlite_reader_rank(seed: int | None, case_id: str | None) -> int | None:
    """SQLite's ``ReaderOrder``: MD5 of "seed:id" (the id as SQLite stores it, 32 hex digits), its first 16 hex
    digits as a signed 64-bit integer (the same order as the hex text, up to a tie in 64 bits)."""
    if seed is None or case_id is None:
        return None
    digest = hashlib.md5(f"{seed}:{case_id}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:16], 16) - 2**63


def sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: SQLite connections learn ``ReaderOrder``'s function."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_RANK, 2, sqlite_reader_rank, deterministic=True)


def queue_lock() -> None:
    """Wait for every concurrent audited change to commit (or roll back) and hold them off until this
    transaction ends: the audit chain's lock (``audit_chain_lock``), which they hold from their first event on.
    The statements after it see what they committed."""
    audit_chain_lock()


def _insert(rows: QuerySet[Any]) -> None:
    """INSERT INTO the queue the (assignment, case, rank) rows that ``rows`` selects, keeping rows already there."""
    sql, params = rows.order_by().values_list("q_assignment", "q_case", "q_rank").query.sql_with_params()
    table = QueuedCase._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (assignment_id, case_id, rank) {sql} ON CONFLICT DO NOTHING",
            params,
        )


def _opened(reader_id: Any, phase: str, case: Any = None) -> Exists:
    return Exists(
        Read.objects.filter(case=case if case is not None else OuterRef("pk"), reader_id=reader_id, phase=phase)
    )


def queue_fill(assignment: ReaderAssignment, *, readers_per_case: int | None = None) -> None:
    """Queue what may come up for a new (or re-activated) assignment: in the unaided phase the trial's complete
    cases, in the aided phase the cases whose unaided read the reader signed; in both, none they opened already
    and, with k readers per case (``readers_per_case``), none that k readers opened in the phase (calibration
    cases aside). Takes ``queue_lock`` first."""
    queue_lock()
    cases = Case.objects.filter(trial_id=assignment.trial_id).exclude(_opened(assignment.reader_id, assignment.phase))
    if readers_per_case is not None:
        opened = Read.objects.filter(case=OuterRef("pk"), phase=assignment.phase).order_by().values("case")
        full = opened.annotate(n=Count("pk")).filter(n__gte=readers_per_case).values("case")
        cases = cases.exclude(Q(pk__in=full) & ~Exists(CalibrationCase.objects.filter(case=OuterRef("pk"))))
    if assignment.phase == Phase.AIDED:
        cases = cases.filter(
            Exists(
                Read.objects.filter(
                    case=OuterRef("pk"),
                    reader_id=assignment.reader_id,
                    phase=Phase.UNAIDED,
                    status=ReadStatus.SIGNED,
                )
            )
        )
    else:
        cases = cases.filter(status=CaseStatus.COMPLETE)
    _insert(
        cases.annotate(
            q_assignment=Value(assignment.pk, output_field=UUIDField()),
            q_case=F("pk"),
            q_rank=ReaderOrder("id", assignment.seed),
        )
    )


def _queue_in(assignments: QuerySet[ReaderAssignment], case: Case) -> None:
    case_id = Value(case.pk, output_field=UUIDField())
    _insert(assignments.annotate(q_assignment=F("pk"), q_case=case_id, q_rank=ReaderOrder(case_id, F("seed"))))


def _queue_for_phase(case: Case, trial_id: Any, phase: str) -> None:
    """Queue the case in every assignment of the phase whose reader has not opened it there (in the aided phase,
    whose reader signed their unaided read of it)."""
    assignments = ReaderAssignment.objects.filter(trial_id=trial_id, phase=phase).exclude(
        Exists(Read.objects.filter(case=case, reader_id=OuterRef("reader_id"), phase=phase))
    )
    if phase == Phase.AIDED:
        signed = Read.objects.filter(
            case=case, reader_id=OuterRef("reader_id"), phase=Phase.UNAIDED, status=ReadStatus.SIGNED
        )
        assignments = assignments.filter(Exists(signed))
    _queue_in(assignments, case)


def queue_case_completed(*, case: Case) -> None:
    """``trials.hooks.on_case_completed``: a case that becomes complete waits in every unaided assignment of its
    trial whose reader has not opened it (again after a reopening: kept if it is still there)."""
    queue_lock()
    _queue_for_phase(case, case.trial_id, Phase.UNAIDED)


def queue_unaided_signed(read: Read) -> None:
    """A signed unaided read queues its case in the reader's aided assignment of the trial, if any (served once
    the washout is over)."""
    queue_lock()
    opened = Read.objects.filter(case_id=read.case_id, reader_id=read.reader_id, phase=Phase.AIDED)
    assignments = ReaderAssignment.objects.filter(
        trial_id=read.assignment.trial_id, reader_id=read.reader_id, phase=Phase.AIDED
    )
    _queue_in(assignments.exclude(Exists(opened)), Case(pk=read.case_id))


def queue_take(read: Read, *, readers_per_case: int | None = None) -> None:
    """The reader opened the case: it leaves their queue. With k readers per case (``readers_per_case``), once k
    readers opened it in the phase it leaves every queue of the phase, unless it is a calibration case (served to
    every reader): the others' walks need not skip it."""
    QueuedCase.objects.filter(assignment_id=read.assignment_id, case_id=read.case_id).delete()
    if readers_per_case is None:
        return
    queue_lock()
    if Read.objects.filter(case_id=read.case_id, phase=read.phase).count() < readers_per_case:
        return
    if CalibrationCase.objects.filter(case_id=read.case_id).exists():
        return
    QueuedCase.objects.filter(
        case_id=read.case_id, assignment__trial_id=read.assignment.trial_id, assignment__phase=read.phase
    ).delete()


def queue_return(read: Read, *, every_reader: bool = False) -> None:
    """A reset read gives its case back to the reader's queue, at its place; with k readers per case
    (``every_reader``) to every queue of the phase it may have left (``queue_take``)."""
    queue_lock()
    case = Case(pk=read.case_id)
    if every_reader:
        _queue_for_phase(case, read.assignment.trial_id, read.phase)
    else:
        _queue_in(ReaderAssignment.objects.filter(pk=read.assignment_id), case)
