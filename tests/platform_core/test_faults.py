"""Faults with the real services (issue 13): the Celery broker down as a case is completed, a database error after
an upload's objects were stored, and PostgreSQL restarted under load. Each service that is stopped is a private
instance of the test's own (tests/support/faults.py); the shared ones keep running."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from unittest import mock

from django.core.files.storage import Storage, default_storage
from django.db import connection
from django.test import TestCase, TransactionTestCase, override_settings, tag
from django.urls import reverse
from rest_framework.test import APIClient

from diagnosis.models import InferenceJob, Prediction
from diagnosis.services import inference_redispatch
from platform_core.accounts.services import api_token_issue
from tests.support import ROOT, LiveWorker, image_factories, require_postgresql, require_redis_broker, require_service
from tests.support.factories import TrialWorld
from tests.support.faults import OFFSET, PrivatePostgres, PrivateRedis, celery_broker, free_port
from tests.support.inference import InferenceFixture
from tests.support.uploads import vf_csv
from trials.models import CaseFile, CaseStatus


@tag("redis", "worker")
class BrokerDownAsACaseIsCompletedTests(InferenceFixture, TransactionTestCase):
    """The broker (a private Redis) is down when a coordinator completes a case: the case is complete, its jobs are
    written and stay queued with no message (one error line says so). With the broker back, the re-dispatch sends
    them and a real worker runs each exactly once, however many messages it got."""

    def setUp(self):
        require_redis_broker()  # results travel through the shared Redis
        self.build()
        self.addCleanup(self.cleanup)
        self.broker = PrivateRedis()
        self.addCleanup(self.broker.stop)
        self.broker.start()
        switch = celery_broker(self.broker.url)
        switch.__enter__()
        self.addCleanup(switch.__exit__, None, None, None)

    def test_jobs_wait_for_the_broker_and_run_once_when_it_is_back(self):
        self.broker.stop()
        client = APIClient()
        client.force_authenticate(self.w.coord1)
        started = time.monotonic()
        with self.assertLogs("diagnosis.services", "ERROR") as logged:
            response = client.post(
                reverse("api:trials:case-status", args=[self.case.pk]), {"status": "complete"}, format="json"
            )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertLess(time.monotonic() - started, 15)
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, CaseStatus.COMPLETE)
        jobs = list(InferenceJob.objects.filter(case=self.case))
        self.assertEqual(len(jobs), 2)
        self.assertEqual({(j.status, j.dispatched_at) for j in jobs}, {("queued", None)})
        self.assertEqual(len(logged.output), 1, logged.output)
        self.assertIn("Broker unreachable", logged.output[0])
        self.assertIn("2 inference job(s) stay queued, not dispatched", logged.output[0])

        # Beat's sweep while the broker is still down sends nothing and keeps the jobs.
        with self.assertLogs("diagnosis.services", "ERROR"):
            self.assertEqual(inference_redispatch(unsent_for=timedelta(0)), 0)
        self.assertEqual(InferenceJob.objects.filter(case=self.case, dispatched_at__isnull=True).count(), 2)

        self.broker.start()  # empty: the messages were never sent
        # A job that waited less than the threshold is left to the request that queued it.
        self.assertEqual(inference_redispatch(unsent_for=timedelta(hours=1)), 0)
        # The sweep twice over (beat firing again before a worker took them): two messages per job.
        self.assertEqual(inference_redispatch(unsent_for=timedelta(0)), 2)
        self.assertEqual(InferenceJob.objects.filter(case=self.case, dispatched_at__isnull=True).count(), 0)
        self.assertEqual(inference_redispatch(unsent_for=timedelta(0), sent_for=timedelta(0)), 2)

        worker = LiveWorker(broker_url=self.broker.url, queues="gpu").start()
        self.addCleanup(worker.stop)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not InferenceJob.objects.filter(case=self.case, status__in=["queued", "running"]).exists():
                break
            time.sleep(0.3)
        jobs = {j.model_version.name: j for j in InferenceJob.objects.filter(case=self.case)}
        self.assertEqual({n: j.status for n, j in jobs.items()}, {"dr-test": "succeeded", "vf-test": "succeeded"})
        self.assertEqual({n: j.attempts for n, j in jobs.items()}, {"dr-test": 1, "vf-test": 1}, worker.log_tail())
        import redis

        queue = redis.Redis.from_url(self.broker.url)
        deadline = time.monotonic() + 30  # the duplicate messages are taken (and do nothing)
        while time.monotonic() < deadline and queue.llen("gpu"):
            time.sleep(0.3)
        time.sleep(1)
        self.assertEqual(queue.llen("gpu"), 0, worker.log_tail())
        self.assertEqual(Prediction.objects.filter(case=self.case).count(), 2)
        self.assertEqual(
            {j.attempts for j in InferenceJob.objects.filter(case=self.case)}, {1}, "a duplicate message ran a job"
        )


class RedispatchTaskTests(InferenceFixture, TestCase):
    """Beat's task sends only queued jobs that lack a message: never dispatched past the threshold, or dispatched
    long ago and still queued; running and finished jobs, and fresh ones, are left alone."""

    def setUp(self):
        self.build()
        self.addCleanup(self.cleanup)

    @override_settings(VISUS_INFERENCE_REDISPATCH_UNSENT_SECONDS=60, VISUS_INFERENCE_RESEND_SECONDS=3600)
    def test_which_jobs_the_sweep_sends(self):
        from django.utils import timezone

        from diagnosis.tasks import inference_redispatch_task

        now = timezone.now()
        fresh = InferenceJob.objects.create(case=self.case, model_version=self.dr)
        old_unsent = InferenceJob.objects.create(case=self.w.case2, model_version=self.dr)
        InferenceJob.objects.filter(pk=old_unsent.pk).update(updated_at=now - timedelta(minutes=5))
        sent_long_ago = InferenceJob.objects.create(case=self.case, model_version=self.vf, dispatched_at=now)
        InferenceJob.objects.filter(pk=sent_long_ago.pk).update(dispatched_at=now - timedelta(hours=2))
        running = InferenceJob.objects.create(case=self.w.case2, model_version=self.vf, status="running")
        InferenceJob.objects.filter(pk=running.pk).update(updated_at=now - timedelta(hours=2))
        with mock.patch("diagnosis.tasks.infer_case_task.apply_async") as send:
            self.assertEqual(inference_redispatch_task.apply().get(), {"sent": 2})
        self.assertEqual(
            sorted(c.kwargs["args"][0] for c in send.call_args_list),
            sorted([str(old_unsent.pk), str(sent_long_ago.pk)]),
        )
        self.assertEqual({c.kwargs["queue"] for c in send.call_args_list}, {"gpu"})
        fresh.refresh_from_db()
        old_unsent.refresh_from_db()
        self.assertIsNone(fresh.dispatched_at)
        self.assertIsNotNone(old_unsent.dispatched_at)


@tag("postgresql", "server")
class PostgresRestartUnderLoadTests(TransactionTestCase):
    """A private PostgreSQL cluster restarted while a real gunicorn (deploy/'s command line) serves requests from four
    threads. During the outage every request ends in time with a clean 503 (the JSON envelope under /api/, the
    branded page elsewhere; never a traceback); once PostgreSQL is back, requests succeed again with the same
    gunicorn (its workers reconnect: CONN_HEALTH_CHECKS).

    The cluster gets its Visus database as a copy of the test database (pg_dump), which ``manage.py test`` migrated
    and where the test made its user, API token and session: ``migrate`` from scratch takes over 30 s on the shared
    test machine. gunicorn runs with --preload (the app imported once, then forked): importing it (torch) takes
    20 s or more per process there."""

    def setUp(self):
        require_postgresql()
        self.pg = PrivatePostgres()
        self.addCleanup(self.pg.remove)
        self.data_dir = Path(tempfile.mkdtemp(prefix="visus-web-"))
        self.addCleanup(shutil.rmtree, self.data_dir, True)
        self.start_server()  # imports the app while the cluster is made
        self.pg.init()
        self.pg.start()
        self.pg.create_database("visus")
        w = TrialWorld()
        self.client.force_login(w.manager)
        self.token, self.session = api_token_issue(user=w.manager), self.client.cookies["sessionid"].value
        self.copy_database()
        deadline = time.monotonic() + 90
        while True:
            status, _, _, _ = self.request("/api/v1/trials/")
            if status == 200:
                break
            if time.monotonic() > deadline or self.server.poll() is not None:
                self.fail(f"gunicorn did not serve ({status}):\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.3)

    def start_server(self):
        env = dict(
            os.environ,
            DJANGO_ENV="development",
            DJANGO_DEBUG="false",
            DATABASE_URL=self.pg.url("visus"),
            VISUS_DATA_DIR=str(self.data_dir),
            VISUS_THROTTLE_USER="100000/minute",
        )
        self.port = free_port(17800 + OFFSET)
        self.log_path = self.data_dir / "gunicorn.log"
        log = open(self.log_path, "wb")
        self.addCleanup(log.close)
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        # deploy/systemd/visus-web.service's command line: two workers instead of four on the shared machine.
        self.server = subprocess.Popen(
            [gunicorn, "platform_core.wsgi:application", "--bind", f"127.0.0.1:{self.port}", "--workers", "2"]
            + ["--preload"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(self.stop_server)

    def copy_database(self):
        from django.db import connection

        db = connection.settings_dict
        env = dict(os.environ, PGPASSWORD=db.get("PASSWORD") or "")
        dump = subprocess.run(
            [
                str(self.pg.bin / "pg_dump"), "--no-owner", "--no-privileges", "-h", db.get("HOST") or "127.0.0.1",
                "-p", str(db.get("PORT") or 5432), "-U", db.get("USER") or "postgres", db["NAME"],
            ],
            env=env, capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        subprocess.run(
            [str(self.pg.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.pg.port),
             "-U", "postgres", "visus"],
            input=dump.stdout, capture_output=True, check=True, timeout=60,
        )  # fmt: skip

    def stop_server(self):
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(10)

    def request(self, path: str, timeout: float = 10) -> tuple[int, str, str, float]:
        """(status, content type, body, seconds); status 0 when no answer came (refused, timed out)."""
        headers = {"Authorization": f"Token {self.token}"} if path.startswith("/api/") else {}
        headers["Cookie"] = f"sessionid={self.session}" if not path.startswith("/api/") else ""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
                body, status, kind = response.read().decode(errors="replace"), response.status, response.headers
        except urllib.error.HTTPError as error:
            body, status, kind = error.read().decode(errors="replace"), error.code, error.headers
        except OSError as error:
            return 0, "", f"{type(error).__name__}: {error}", time.monotonic() - started
        return status, kind.get("Content-Type", ""), body, time.monotonic() - started

    def test_requests_fail_cleanly_while_postgres_restarts_and_recover_without_restarting_visus(self):
        import threading

        server_pid = self.server.pid
        results: list[tuple[float, str, int, str, str, float]] = []
        stop = threading.Event()
        paths = ["/api/v1/trials/", "/trials/"]

        def load(n: int) -> None:
            i = n
            while not stop.is_set():
                path = paths[i % 2]
                i += 1
                started = time.monotonic()
                status, kind, body, seconds = self.request(path)
                results.append((started, path, status, kind, body, seconds))
                time.sleep(0.05)

        threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(2)
            stopping_at = time.monotonic()
            self.pg.stop()
            down_at = time.monotonic()
            time.sleep(3)
            starting_at = time.monotonic()  # the cluster may answer before pg_ctl start returns
            self.pg.start()
            up_at = time.monotonic()
            time.sleep(4)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        self.assertEqual((self.server.poll(), self.server.pid), (None, server_pid), "gunicorn must not restart")

        log = self.log_path.read_text(errors="replace")[-3000:]
        for _started, path, status, kind, body, seconds in results:
            self.assertIn(status, (200, 503), f"{path}: {status} {body[:300]}\n{log}")
            self.assertLess(seconds, 10, path)
            self.assertNotIn("Traceback", body)
            self.assertNotIn("psycopg", body)
            if status == 503 and path.startswith("/api/"):
                self.assertEqual(kind, "application/json")
                self.assertEqual(json.loads(body)["error"]["code"], "database_unavailable")
            elif status == 503:
                self.assertIn("text/html", kind)
                self.assertIn('data-status="503"', body)
                self.assertIn('class="site-header"', body)  # the branded page
                self.assertIn("cannot reach its database", body)
        outage = [r for r in results if down_at < r[0] and r[0] + r[5] < starting_at]
        self.assertTrue(outage, "no request ran during the outage")
        self.assertEqual({(r[1], r[2]) for r in outage}, {(p, 503) for p in paths})
        before = [r for r in results if r[0] + r[5] < stopping_at]
        after = [r for r in results if r[0] > up_at]
        self.assertTrue(before and after)
        self.assertEqual({r[2] for r in before}, {200})
        self.assertEqual({r[2] for r in after}, {200}, [(r[1], r[2], r[4][:200]) for r in after if r[2] != 200])
        self.assertEqual({r[1] for r in after}, set(paths))

        # Restarted while no request came: each gunicorn worker holds a connection the restart cut. The first request
        # of each finds it dead before using it (CONN_HEALTH_CHECKS) and reconnects: no error at all.
        self.pg.restart()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:  # at once, so that both workers answer
            answers = list(pool.map(lambda i: self.request(paths[i % 2]), range(12)))
        self.assertEqual([a[0] for a in answers], [200] * 12, [a[2][:200] for a in answers if a[0] != 200])
        self.assertEqual((self.server.poll(), self.server.pid), (None, server_pid))


class DatabaseErrorResponseTests(TestCase):
    """In process: a view that loses the database answers 503 (the envelope under /api/, the branded page
    elsewhere), with Retry-After; any other crash stays a 500."""

    def setUp(self):
        self.w = TrialWorld()
        self.client.force_login(self.w.manager)
        self.client.raise_request_exception = False

    def test_a_lost_connection_is_a_503(self):
        from django.db import InterfaceError

        for error in (lost_connection("server closed the connection unexpectedly"), InterfaceError("closed")):
            with (
                mock.patch("trials.apis.TrialListApi.get_queryset", side_effect=error),
                self.assertLogs("django.request", "ERROR"),
            ):
                response = self.client.get("/api/v1/trials/")
            self.assertEqual(response.status_code, 503)
            self.assertEqual(response.json()["error"]["code"], "database_unavailable")
            self.assertEqual(response["Retry-After"], "30")
            self.assertNotIn("closed", response.json()["error"]["message"])
        with (
            mock.patch("trials.views.trials_for", side_effect=lost_connection("the database system is starting up")),
            self.assertLogs("django.request", "ERROR"),
        ):
            response = self.client.get("/trials/")
        self.assertEqual(response.status_code, 503)
        html = response.content.decode()
        self.assertIn('data-status="503"', html)
        self.assertNotIn("starting up", html)
        with (
            mock.patch("trials.apis.TrialListApi.get_queryset", side_effect=RuntimeError("boom")),
            self.assertLogs("django.request", "ERROR"),
        ):
            self.assertEqual(self.client.get("/api/v1/trials/").status_code, 500)


def bucket_names(prefix: str) -> set[str]:
    """The bucket's own listing (S3 ListObjectsV2), not Visus's idea of what is stored."""
    from django.core.files.storage import default_storage

    from platform_core.storage import is_s3

    require_service("S3 storage (SeaweedFS)", is_s3(default_storage), "make test starts SeaweedFS and sets AWS_*")
    return {item.key for item in default_storage.bucket.objects.filter(Prefix=prefix)}


def names_of(case_file) -> set[str]:
    return {n for n in (case_file.content.name, case_file.preview.name, case_file.thumbnail.name) if n}


@tag("s3")
class UploadDatabaseFaultTests(TestCase):
    """A database write that fails after the upload's objects were stored in S3 leaves no object behind."""

    def setUp(self):
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.prefix = f"cases/{self.w.case1.pk}/"
        self.assertEqual(bucket_names(self.prefix), set())

    def test_a_failed_later_write_deletes_the_stored_objects(self):

        from platform_core import storage

        written: list[str] = []

        def save_and_note(*args, **kwargs):
            written.append(storage.save_private(*args, **kwargs))
            return written[-1]

        client = APIClient()
        client.force_authenticate(self.w.coord1)
        client.raise_request_exception = False
        url = reverse("api:trials:case-file-upload", args=[self.w.case1.pk])
        from django.core.files.uploadedfile import SimpleUploadedFile

        upload = SimpleUploadedFile("field.csv", vf_csv("OD"), content_type="text/csv")
        with (
            mock.patch("trials.file_services.save_private", side_effect=save_and_note),
            mock.patch(
                "trials.models.VisualFieldResult.save", side_effect=lost_connection("server closed the connection")
            ),
            self.assertLogs("django.request", "ERROR"),
        ):
            response = client.post(url, {"file": upload}, format="multipart")
        self.assertEqual(response.status_code, 503, response.content)
        self.assertEqual(response.json()["error"]["code"], "database_unavailable")
        self.assertEqual(len(written), 2)  # the field and its plot were in the bucket before the failing write
        self.assertEqual(bucket_names(self.prefix), set())
        self.assertFalse(CaseFile.objects.filter(case=self.w.case1).exists())

    def test_objects_left_by_a_rolled_back_transaction_are_swept(self):
        from django.db import transaction

        from trials.file_services import case_file_upload, orphan_objects_sweep
        from trials.tasks import orphan_objects_sweep_task

        kept = case_file_upload(actor=self.w.coord1, case=self.w.case1, data=vf_csv("OD")).case_file
        try:
            with transaction.atomic():  # as import_cases wraps an upload with the case it made for it
                lost = case_file_upload(
                    actor=self.w.coord1, case=self.w.case1, data=image_factories.plain_png(400, 300)
                )
                raise RuntimeError("the import stopped after the upload returned")
        except RuntimeError:
            pass
        orphans = names_of(lost.case_file)
        self.assertEqual(len(orphans), 3)
        self.assertEqual(bucket_names(self.prefix), names_of(kept) | orphans)  # rows gone, objects still there
        self.assertFalse(CaseFile.objects.filter(pk=lost.case_file.pk).exists())

        self.assertFalse(set(orphan_objects_sweep()) & orphans)  # within the grace period: an upload in progress
        # Earlier test classes leave objects in the shared test bucket (their rows rolled back): enough, in a full
        # run, for the sweep's refusal (most of the bucket without rows) to stop it. That refusal has its own test;
        # here the sweep must run, so its free count is lifted.
        with (
            override_settings(VISUS_ORPHAN_GRACE_SECONDS=0),
            mock.patch("trials.file_services.ORPHAN_SWEEP_FREE_COUNT", 10**9),
            self.assertLogs("trials.file_services", "WARNING"),
        ):
            deleted = orphan_objects_sweep_task.apply().get()["deleted"]
        self.assertGreaterEqual(deleted, 3)
        self.assertEqual(bucket_names(self.prefix), names_of(kept))
        with default_storage.open(kept.content.name) as handle:
            self.assertTrue(handle.read())
        for name in names_of(kept):
            default_storage.delete(name)


@tag("s3")
class UploadCommitFaultTests(TransactionTestCase):
    """PostgreSQL refuses the upload's commit (a deferred trigger raises at COMMIT, SQLSTATE 57P01 as a server
    shutting down): the objects already in S3 are deleted, no row stays."""

    def setUp(self):
        require_postgresql()
        self.w = TrialWorld(modalities=("fundus", "visual_field"))
        self.prefix = f"cases/{self.w.case1.pk}/"
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION visus_fault_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '57P01'; END $$"
            )
            cursor.execute(
                "CREATE CONSTRAINT TRIGGER visus_fault AFTER INSERT ON trials_casefile DEFERRABLE INITIALLY DEFERRED "
                "FOR EACH ROW EXECUTE FUNCTION visus_fault_refuse()"
            )
        self.addCleanup(self.drop_trigger)

    def drop_trigger(self):
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS visus_fault ON trials_casefile")
            cursor.execute("DROP FUNCTION IF EXISTS visus_fault_refuse()")

    def test_a_refused_commit_leaves_no_object(self):
        from django.db import OperationalError

        from platform_core import storage
        from trials.file_services import case_file_upload

        written: list[str] = []

        def save_and_note(*args, **kwargs):
            written.append(storage.save_private(*args, **kwargs))
            return written[-1]

        with (
            mock.patch("trials.file_services.save_private", side_effect=save_and_note),
            self.assertRaises(OperationalError),
        ):
            case_file_upload(actor=self.w.coord1, case=self.w.case1, data=image_factories.plain_png(400, 300))
        self.assertEqual(len(written), 3)  # photograph, preview, thumbnail
        self.assertEqual(bucket_names(self.prefix), set())
        self.assertFalse(CaseFile.objects.exists())


class RemoteStorage(Storage):
    """A storage with neither a folder (Django's ``Storage.path()`` refuses) nor an S3 bucket, as another cloud's
    backend would be."""

    def __init__(self, location: str = "") -> None:
        self.location = location


class OrphanSweepOnDiskTests(TestCase):
    """The same sweep on the embedded mode's storage (a folder): only unreferenced objects past the grace period go."""

    @contextmanager
    def storage(self, backend: str) -> Iterator[Path]:
        """The default storage is ``backend`` (given a fresh folder as its location) while the block runs."""
        folder = Path(tempfile.mkdtemp(prefix="visus-sweep-"))
        self.addCleanup(shutil.rmtree, folder, True)
        storages = {
            "default": {"BACKEND": backend, "OPTIONS": {"location": folder}},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
        with override_settings(STORAGES=storages):
            yield folder

    def test_a_storage_that_cannot_be_listed_is_not_swept_and_the_log_says_why(self):
        # Neither a folder nor an S3 bucket: nothing can be listed, so nothing is known to be an orphan. Not silence:
        # a warning names the storage.
        from platform_core.storage import stored_objects
        from trials.file_services import orphan_objects_sweep
        from trials.tasks import orphan_objects_sweep_task

        with self.storage(f"{__name__}.{RemoteStorage.__qualname__}"):
            with self.assertLogs("platform_core.storage", "WARNING") as listing:
                self.assertEqual(list(stored_objects("cases")), [])
            self.assertIn("RemoteStorage", listing.output[0])
            self.assertIn("cannot be listed", listing.output[0])
            with self.assertLogs("trials.file_services", "WARNING") as sweep:
                self.assertEqual(orphan_objects_sweep(older_than=timedelta(0)), [])
            self.assertIn("Orphan sweep did nothing", sweep.output[0])
            self.assertIn("RemoteStorage", sweep.output[0])
            with self.assertLogs("trials.file_services", "WARNING"):
                self.assertEqual(orphan_objects_sweep_task.apply().get(), {"deleted": 0})

    def test_the_sweep_lists_the_folder_and_keeps_referenced_objects(self):
        import os as _os

        from platform_core.storage import save_private, stored_objects
        from trials.file_services import case_file_upload, orphan_objects_sweep

        with self.storage("django.core.files.storage.FileSystemStorage") as folder:
            w = TrialWorld(modalities=("fundus", "visual_field"))
            kept = case_file_upload(actor=w.coord1, case=w.case1, data=vf_csv("OD")).case_file
            orphan = save_private(f"cases/{w.case1.pk}", b"left behind", "csv")
            recent = save_private(f"cases/{w.case1.pk}", b"an upload in progress", "csv")
            hour_ago = time.time() - 3600
            for name in [orphan, *names_of(kept)]:
                _os.utime(folder / name, (hour_ago, hour_ago))
            listed = dict(stored_objects("cases"))
            self.assertEqual(set(listed), names_of(kept) | {orphan, recent})
            self.assertLess(listed[orphan], listed[recent])
            with self.assertLogs("trials.file_services", "WARNING"):
                self.assertEqual(orphan_objects_sweep(older_than=timedelta(minutes=30)), [orphan])
            self.assertEqual(set(dict(stored_objects("cases"))), names_of(kept) | {recent})

    def test_a_bucket_mostly_without_rows_is_not_swept(self):
        # A restored backup or a staging database pointed at the bucket: most objects have no row. Nothing goes.
        from platform_core.storage import save_private, stored_objects
        from trials.file_services import ORPHAN_SWEEP_FREE_COUNT, orphan_objects_sweep

        with self.storage("django.core.files.storage.FileSystemStorage") as folder:
            names = [save_private("cases/elsewhere", b"an original", "csv") for _ in range(ORPHAN_SWEEP_FREE_COUNT + 1)]
            with self.assertLogs("trials.file_services", "ERROR") as logs:
                self.assertEqual(orphan_objects_sweep(older_than=timedelta(0)), [])
            self.assertIn("Nothing was deleted", logs.output[0])
            self.assertEqual(set(dict(stored_objects("cases"))), set(names))
            for name in names[1:]:
                (folder / name).unlink()
            with self.assertLogs("trials.file_services", "WARNING"):
                self.assertEqual(orphan_objects_sweep(older_than=timedelta(0)), [names[0]])  # a few: swept


def lost_connection(message: str) -> Exception:
    """Django's OperationalError as its wrapper raises it for a connection psycopg2 lost: from a driver error with no
    SQLSTATE (the server never answered)."""
    import psycopg2
    from django.db import OperationalError

    error = OperationalError(message)
    error.__cause__ = psycopg2.OperationalError(message)
    return error
