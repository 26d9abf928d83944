"""Export of reads on PostgreSQL (issue 12, items 5 and 6): the long reads export of 1,000,000 signed reads (three
answered questions each, so 3,000,000 rows) through ``evaluation.services.copy_rows`` next to a bare
``COPY (SELECT ...) TO STDOUT`` of the same rows into a null sink, and next to the Python csv writer over a
cursor (``cursor_rows``). Prints seconds, the time ratio (target at most 1.5x) and the peak memory each adds
(Python heap by tracemalloc and the process's resident high-water mark; target under 50 MB extra).

Builds a throw-away test database (``test_<name>``), fills it in bulk with SQL, measures, drops it. Run:
``DATABASE_URL=postgres://... make bench ARGS=bench_exports`` (``BENCH_EXPORT_READS=100000`` for a quick run).

Here (PostgreSQL on a shared 2-core machine, 1,000,000 reads, 250.7 MB of CSV): bare COPY 31.6 s, export 27.4 s
(ratio 0.87x), export's Python heap peak 9.4 MB (the 8 MiB spool plus a chunk), no rise of the resident high-water
mark over the warm-up COPY; the Python csv writer over a server-side cursor 71.7 s (2.27x). (That last figure
predates ``cursor_rows`` writing through ``evaluation.portable.csv_line``, COPY's formatting, instead of
``csv.writer``; not re-measured.)
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc


class _NullSink:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(label: str, run) -> tuple[float, int]:
    rss_before = _rss_mb()
    tracemalloc.start()
    start = time.perf_counter()
    size = run()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{label:<44} {seconds:8.2f} s  {size / 1e6:8.1f} MB of CSV  python heap peak {peak / 1e6:6.1f} MB  "
        f"resident high-water +{_rss_mb() - rss_before:6.1f} MB",
        flush=True,
    )
    return seconds, peak


def main() -> None:
    reads = int(os.environ.get("BENCH_EXPORT_READS", "1000000"))
    readers = 100
    cases = -(-reads // readers)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    if connection.vendor != "postgresql":
        print("bench_exports needs PostgreSQL (DATABASE_URL=postgres://...): skipped")
        return
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from django.utils import timezone

        from evaluation import exports, services
        from platform_core.accounts.models import Role
        from reading import services as reading_services
        from reading.models import Read, ReaderAssignment
        from tests.support.factories import HospitalFactory, MembershipFactory, UserFactory, make_trial, member
        from trials.models import Case, Subject, TrialSite

        hospital = HospitalFactory(code="B01")
        manager = member(Role.TRIAL_MANAGER, hospital, email="bench-manager@visus.example")
        trial = make_trial(manager=manager, slug="bench", prefix="BN01", hospitals=[hospital])
        site = TrialSite.objects.get(trial=trial, hospital=hospital)
        now = timezone.now()
        subjects = Subject.objects.bulk_create(
            Subject(
                trial=trial,
                site=site,
                pseudonym=f"BN01-B01-{n:05d}",
                number=n,
                enrolled_at=now,
                enrolled_by=manager,
                consent_days_before_enrolment=0,
                consent_form_version="v1",
                sex="female",
                age="60",
                diabetes_type="type2",
            )
            for n in range(1, -(-cases // 2) + 1)
        )
        Case.objects.bulk_create(
            Case(subject=s, trial=s.trial, site=s.site, laterality=eye, visit_day=0, status="complete")
            for s in subjects
            for eye in ("OD", "OS")
        )
        reading_services.reading_setup_set(actor=manager, trial=trial, crossing="fully_crossed")
        for n in range(readers):
            user = UserFactory(email=f"bench-reader{n}@visus.example")
            MembershipFactory(user=user, hospital=hospital, role=Role.READER)
            reading_services.reader_assign(actor=manager, trial=trial, reader=user, phase="unaided", group="resident")
        start = time.perf_counter()
        with connection.cursor() as cursor:
            # Signed reads in bulk: every reader reads the first ``cases`` cases (the services are benchmarked in
            # bench_reading; here only the export is).
            cursor.execute(
                f"INSERT INTO {Read._meta.db_table} (id, created_at, updated_at, assignment_id, reader_id, case_id, "  # noqa: S608
                "phase, number, status, version, answers, confidences, seconds_on_case, signed_at, signature_name, "
                "signature_meaning) "
                "SELECT gen_random_uuid(), now(), now(), a.id, a.reader_id, c.id, 'unaided', c.n, 'signed', 1, "
                "jsonb_build_object('icdr_grade', mod(c.n, 5)::text, 'referable_dr', "
                "CASE WHEN mod(c.n, 5) >= 2 THEN 'yes' ELSE 'no' END, 'confidence', 70), "
                "jsonb_build_object('icdr_grade', 60 + mod(c.n, 40), 'referable_dr', 50 + mod(c.n, 50)), "
                "40 + mod(c.n, 200), "
                "now(), 'Bench Reader', 'read' "
                f"FROM {ReaderAssignment._meta.db_table} a CROSS JOIN (SELECT c.id, row_number() OVER (ORDER BY c.id) "
                f"AS n FROM {Case._meta.db_table} c) c WHERE a.trial_id = %s AND c.n <= %s",
                [trial.pk, cases],
            )
            cursor.execute(f"ANALYZE {Read._meta.db_table}")
        total = Read.objects.count()
        print(
            f"{total:,} signed reads by {readers} readers of {cases:,} cases, inserted in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )

        def bare_copy() -> int:
            sink = _NullSink()
            with connection.cursor() as cursor:
                select = cursor.mogrify(exports.sql_of("reads"), {"trial": trial.pk}).decode()
                cursor.cursor.copy_expert(f"COPY ({select}) TO STDOUT WITH CSV HEADER", sink)
            return sink.size

        def export() -> int:
            return sum(len(chunk) for chunk in services.copy_rows("reads", trial))

        def python_csv() -> int:
            return sum(len(chunk) for chunk in services.cursor_rows("reads", trial))

        bare_copy()  # warm the cache so that the first measured run is not penalised
        copy_s, copy_peak = _measure("COPY ... TO STDOUT into a null sink", bare_copy)
        export_s, export_peak = _measure("export (copy_rows: COPY, spool, 64 KiB chunks)", export)
        print(
            f"export / COPY time ratio: {export_s / copy_s:.2f}x (target at most 1.5x); "
            f"extra python heap {(export_peak - copy_peak) / 1e6:.1f} MB (target under 50 MB)",
            flush=True,
        )
        csv_s, _ = _measure("python csv writer over a cursor (cursor_rows)", python_csv)
        print(f"cursor_rows / COPY time ratio: {csv_s / copy_s:.2f}x", flush=True)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
