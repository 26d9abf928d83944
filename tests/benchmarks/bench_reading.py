"""Blind reading speed (issue 11, item 14): p50/p95 of next case and draft save with 30 readers and 2,000
cases, on the database DATABASE_URL names (PostgreSQL for the target: p95 under 150 ms on loopback).

Builds a throw-away test database (``test_<name>``), fills it in bulk, times the services each reader calls,
prints the figures and drops the database. Run: ``DATABASE_URL=postgres://... make bench ARGS=bench_reading``.
"""

from __future__ import annotations

import os
import statistics
import time


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(readers: int = 30, cases: int = 2000, rounds: int = 5) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment
    from django.utils import timezone

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from platform_core.accounts.models import Role
        from reading import services
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
                pseudonym=f"BN01-B01-{n:04d}",
                number=n,
                enrolled_at=now,
                enrolled_by=manager,
                consent_days_before_enrolment=0,
                consent_form_version="v1",
                sex="female",
                age="60",
                diabetes_type="type2",
            )
            for n in range(1, cases // 2 + 1)
        )
        Case.objects.bulk_create(
            Case(subject=s, trial=s.trial, site=s.site, laterality=eye, visit_day=0, status="complete")
            for s in subjects
            for eye in ("OD", "OS")
        )
        services.reading_setup_set(actor=manager, trial=trial, crossing="fully_crossed")
        people = []
        for n in range(readers):
            user = UserFactory(email=f"bench-reader{n}@visus.example")
            MembershipFactory(user=user, hospital=hospital, role=Role.READER)
            services.reader_assign(actor=manager, trial=trial, reader=user, phase="unaided", group="resident")
            people.append(user)
        from trials.services import trial_transition

        trial = trial_transition(actor=manager, trial=trial, status="reading")
        next_ms: list[float] = []
        save_ms: list[float] = []
        answers = {"icdr_grade": "1", "referable_dr": "no", "confidence": 70}
        confidences = {"icdr_grade": 80, "referable_dr": 75}
        for _ in range(rounds):
            for user in people:
                start = time.perf_counter()
                read = services.read_next(reader=user, trial=trial, phase="unaided")
                next_ms.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                read = services.read_draft_save(
                    reader=user, read=read, version=read.version, answers=answers, confidences=confidences, seconds=5
                )
                save_ms.append((time.perf_counter() - start) * 1000)
                # Signing (a password hash) is not what is timed; the next round then serves the next case.
                read.status, read.signed_at, read.signature_name = "signed", timezone.now(), user.full_name
                read.save(update_fields=["status", "signed_at", "signature_name"])
        print(f"database: {connection.vendor}; {readers} readers x {Case.objects.count()} cases, {rounds} rounds")
        for label, values in (("next case", next_ms), ("draft save", save_ms)):
            print(
                f"{label:10s}  p50 {statistics.median(values):7.1f} ms   p95 {_percentile(values, 0.95):7.1f} ms   "
                f"max {max(values):7.1f} ms   (n={len(values)}; target p95 < 150 ms on PostgreSQL loopback)"
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
