"""The analysis dashboard with 100,000 reads on PostgreSQL (issue 12, items 4 and 6): 20 readers (three experience
groups) read 2,500 cases unaided and AI-aided, fully crossed (plus 10 hidden calibration cases: 100,400 signed
reads), two model versions predict every case, the reference standard is locked. Prints the seconds of
``evaluation.analysis.trial_analysis`` (the selectors and every analysis), of the figures, and of the whole page
request as a statistician (median of five after a warm-up); target under 1 s.

Builds a throw-away test database (``test_<name>``), fills it in bulk (reads with one SQL INSERT ... SELECT),
measures, drops it. Run: ``DATABASE_URL=postgres://... make bench ARGS=bench_dashboard``
(``BENCH_DASHBOARD_CASES=500`` for a quick run).

Here (PostgreSQL on a shared 2-core machine at load average 6.3, 100,400 reads): with numpy's default BLAS
threads trial_analysis 1.42 s and the page 1.39 s (target not met: the two BLAS threads wait on each other on a
busy machine); with one BLAS thread, as deploy/systemd/visus-web.service runs the web workers, trial_analysis
0.66 s and the page 0.68 s (target met).
"""

from __future__ import annotations

import os
import statistics
import time

READERS = 20
GROUPS = ("resident", "attending", "specialist")
CALIBRATION_CASES = 10


def _median_seconds(run, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _build(cases: int):
    import numpy as np
    from django.db import connection
    from django.utils import timezone

    from diagnosis.models import InferenceJob, Prediction
    from platform_core.accounts.models import Role
    from reading import services as reading_services
    from reading.models import CalibrationCase, Read, ReaderAssignment, ReadingSetup
    from tests.support.dashboard import model_version
    from tests.support.factories import HospitalFactory, MembershipFactory, UserFactory, make_trial, member
    from trials.models import Case, ReferenceStandard, Subject, TrialSite

    rng = np.random.default_rng(42)
    hospitals = [HospitalFactory(code="B01"), HospitalFactory(code="B02")]
    manager = member(Role.TRIAL_MANAGER, hospitals[0], email="bench-manager@visus.example")
    statistician = member(Role.STATISTICIAN, hospitals[0], email="bench-stats@visus.example")
    trial = make_trial(manager=manager, slug="bench-dash", prefix="BD01", hospitals=hospitals)
    sites = list(TrialSite.objects.filter(trial=trial).order_by("hospital__code"))
    now = timezone.now()
    total = cases + CALIBRATION_CASES
    subjects = Subject.objects.bulk_create(
        Subject(
            trial=trial,
            site=sites[n % 2],
            pseudonym=f"BD01-B0{n % 2 + 1}-{n:05d}",
            number=n,
            enrolled_at=now,
            enrolled_by=manager,
            consent_days_before_enrolment=0,
            consent_form_version="v1",
            sex=("female", "male")[n % 2],
            age=str(30 + n % 60),
            diabetes_type=("type1", "type2")[n % 3 == 0],
        )
        for n in range(1, -(-total // 2) + 1)
    )
    made = Case.objects.bulk_create(
        Case(subject=s, trial=s.trial, site=s.site, laterality=eye, visit_day=0, status="complete")
        for s in subjects
        for eye in ("OD", "OS")
    )[:total]
    grades = rng.choice(5, size=total, p=[0.3, 0.15, 0.25, 0.15, 0.15])
    ReferenceStandard.objects.bulk_create(
        ReferenceStandard(case=c, icdr_grade=int(g), source="imported") for c, g in zip(made, grades, strict=True)
    )
    CalibrationCase.objects.bulk_create(CalibrationCase(case=c, known_answers={"icdr_grade": "0"}) for c in made[-10:])
    reading_services.reading_setup_set(actor=manager, trial=trial, crossing="fully_crossed", aided_phase=True)
    for n in range(READERS):
        user = UserFactory(email=f"bench-reader{n}@visus.example")
        MembershipFactory(user=user, hospital=hospitals[n % 2], role=Role.READER)
        for phase in ("unaided", "aided"):
            reading_services.reader_assign(
                actor=manager, trial=trial, reader=user, phase=phase, group=GROUPS[n % len(GROUPS)]
            )
    for n, version in enumerate(("1", "2")):
        model = model_version("dr-bench", version)
        referable = grades[:cases] >= 2
        probability = 1 / (1 + np.exp(-(rng.normal(0, 1, cases) + (2.0 + n * 0.3) * (referable - 0.5))))
        jobs = InferenceJob.objects.bulk_create(
            InferenceJob(case=c, model_version=model, status="succeeded") for c in made[:cases]
        )
        Prediction.objects.bulk_create(
            Prediction(
                job=job,
                case=job.case,
                model_version=model,
                runtime_ms=1.0,
                referable_probability=float(p),
                grade=int(min(4, max(0, g + rng.integers(-1, 2)))),
            )
            for job, p, g in zip(jobs, probability, grades[:cases], strict=True)
        )
    start = time.perf_counter()
    with connection.cursor() as cursor:
        # Every reader signs every case in both phases: the grade is the reference grade give or take one (aided
        # reads a little closer), the referable answer follows it, the confidence is random.
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            f"INSERT INTO {Read._meta.db_table} (id, created_at, updated_at, assignment_id, reader_id, case_id, "  # noqa: S608
            "phase, number, status, version, answers, confidences, seconds_on_case, signed_at, signature_name, "
            "signature_meaning) "
            "SELECT gen_random_uuid(), now(), now(), a.id, a.reader_id, c.id, a.phase, c.n, 'signed', 1, "
            "jsonb_build_object('icdr_grade', x.g::text, 'referable_dr', CASE WHEN x.g >= 2 THEN 'yes' ELSE 'no' END, "
            "'confidence', 70), jsonb_build_object('icdr_grade', 70, 'referable_dr', x.conf), 40, now(), "
            "'Bench Reader', 'read' "
            f"FROM {ReaderAssignment._meta.db_table} a CROSS JOIN (SELECT c.id, ref.icdr_grade AS grade, "
            f"row_number() OVER (ORDER BY c.id) AS n FROM {Case._meta.db_table} c "
            f"JOIN {ReferenceStandard._meta.db_table} ref ON ref.case_id = c.id) c "
            "CROSS JOIN LATERAL (SELECT greatest(0, least(4, c.grade + CASE WHEN random() < "
            "CASE a.phase WHEN 'aided' THEN 0.25 ELSE 0.35 END THEN (CASE WHEN random() < 0.5 THEN -1 ELSE 1 END) "
            "ELSE 0 END)) AS g, (40 + floor(random() * 60))::int AS conf) x "
            "WHERE a.trial_id = %s",
            [trial.pk],
        )
        cursor.execute("ANALYZE")  # the statistics autovacuum would gather after a bulk load
    ReadingSetup.objects.filter(trial=trial).update(reference_locked_at=now, reference_locked_by=manager)
    print(
        f"{Read.objects.filter(status='signed').count():,} signed reads by {READERS} readers of {cases:,} cases "
        f"(+{CALIBRATION_CASES} calibration cases), two model versions, inserted in "
        f"{time.perf_counter() - start:.1f} s",
        flush=True,
    )
    return trial, statistician


def main() -> None:
    cases = int(os.environ.get("BENCH_DASHBOARD_CASES", "2500"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    if connection.vendor != "postgresql":
        print("bench_dashboard needs PostgreSQL (DATABASE_URL=postgres://...): skipped")
        return
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from django.test import Client
        from django.urls import reverse

        from evaluation import dashboard
        from evaluation.analysis import trial_analysis

        trial, statistician = _build(cases)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        report = trial_analysis(trial)  # warm-up
        q = next(q for q in report["questions"] if q["key"] == "referable_dr")
        mrmc = q["mrmc"]["unaided_vs_aided"]
        aucs = ", ".join(f"{m['auc']['auc']:.3f}" for m in q["models"])
        print(
            f"referable DR: {q['cases_with_reference']} cases, model AUCs {aucs}; MRMC aided - unaided "
            f"{mrmc['difference']:+.4f} (p {mrmc['p_value']:.3g}) over {mrmc['readers']} readers x "
            f"{mrmc['cases']} cases",
            flush=True,
        )
        client = Client()
        client.force_login(statistician)
        url = reverse("evaluation:dashboard", args=[trial.slug])
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        # numpy's BLAS threads: on a busy machine (this one is shared) they wait on each other for matrices this
        # small (20 x 2,500), so the figures are given with the default threads and with one (as a web worker with
        # OPENBLAS_NUM_THREADS=1 runs).
        from threadpoolctl import threadpool_limits

        for label, limit in (("default BLAS threads", None), ("one BLAS thread", 1)):
            with threadpool_limits(limits=limit):
                analysis_s = _median_seconds(lambda: trial_analysis(trial))
                figures_s = _median_seconds(lambda: dashboard.figures(report))
                page_s = _median_seconds(lambda: client.get(url))
            print(f"[{label}]", flush=True)
            print(f"  trial_analysis (selectors + every analysis) {analysis_s:6.3f} s", flush=True)
            print(f"  dashboard figures                           {figures_s:6.3f} s", flush=True)
            print(
                f"  dashboard page request (statistician)       {page_s:6.3f} s  "
                f"({len(response.content) / 1e3:.0f} kB; target under 1 s: {'met' if page_s < 1 else 'NOT met'})",
                flush=True,
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
