"""Shared test helpers: real-service requirements, a live Celery worker, a headless browser."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import unittest
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def services_required() -> bool:
    """``make test`` (and so CI) sets VISUS_REQUIRE_SERVICES=1: a missing service is a failure there."""
    return os.environ.get("VISUS_REQUIRE_SERVICES") == "1"


def require_service(name: str, available: bool, detail: str) -> None:
    """Fail (under make test) or skip with the reason printed when a real service is missing."""
    if available:
        return
    message = f"{name} is required for this test but is not available: {detail}"
    if services_required():
        raise AssertionError(message)
    print(f"\nSKIPPED: {message}", file=sys.stderr)
    raise unittest.SkipTest(message)


def require_postgresql() -> None:
    require_service(
        "PostgreSQL",
        connection.vendor == "postgresql",
        f"the test database is {connection.vendor}; set DATABASE_URL=postgres://... (make test does)",
    )


def require_rabbitmq() -> str:
    url = os.environ.get("VISUS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    ok, detail = True, url
    try:
        from kombu import Connection

        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # any failure means the service is missing
        ok, detail = False, f"{url} ({exc})"
    require_service("RabbitMQ", ok, detail)
    return url


def require_redis_broker() -> str:
    url = settings.CELERY_BROKER_URL
    ok = url.startswith("redis://")
    if ok:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            ok = False
            url = f"{url} ({exc})"
    require_service("Redis", ok, f"CELERY_BROKER_URL is {url!r}")
    return settings.CELERY_BROKER_URL


def database_url_for_worker() -> str:
    """A DATABASE_URL naming the *test* database, so a worker process sees the test's rows."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = db.get("USER") or "postgres"
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


class LiveWorker:
    """A real ``celery worker`` process for the duration of a test class."""

    def __init__(self, *, broker_url: str, queues: str = "default,gpu", extra_env: dict[str, str] | None = None):
        self.broker_url = broker_url
        self.queues = queues
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(settings.DATA_DIR) / f"worker-{uuid.uuid4().hex[:8]}.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "CELERY_BROKER_URL": self.broker_url,
                "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or self.broker_url,
                "DATABASE_URL": database_url_for_worker(),
                "OMP_WAIT_POLICY": "PASSIVE",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> LiveWorker:
        celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"
        self.log = open(self.log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [
                celery,
                "-A",
                "platform_core",
                "worker",
                "-Q",
                self.queues,
                "-n",
                self.name,
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self

    def send(self, task: Any, args: list, queue: str = "default") -> Any:
        """Publish a task through this worker's broker (which may differ from the settings' broker)."""
        from platform_core.celery import app

        if self.broker_url == settings.CELERY_BROKER_URL:
            return task.apply_async(args=args, queue=queue)
        with app.connection_for_write(self.broker_url) as connection:
            return task.apply_async(args=args, queue=queue, connection=connection)

    def wait_ready(self, app: Any, timeout: float = 60) -> None:
        from platform_core.tasks import worker_ping

        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise AssertionError(f"Celery worker exited early:\n{self.log_tail()}")
            try:
                self.send(worker_ping, ["ready"]).get(timeout=5)
                return
            except Exception as exc:  # keep waiting until the deadline
                last_error = exc
        raise AssertionError(f"Celery worker not ready after {timeout}s ({last_error}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if hasattr(self, "log"):
            self.log.close()


def chrome_options() -> Any:
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    return options


def start_browser() -> Any:
    """Headless Debian Chromium through chromedriver; fails (under make test) when missing."""
    require_service(
        "Chromium",
        os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver"),
        "install Debian's chromium and chromium-driver (make test does)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=chrome_options())
    driver.implicitly_wait(5)
    return driver


class BrowserTestCase:
    """Mixin for StaticLiveServerTestCase: one headless Chromium per class, a clean cookie jar per test."""

    browser: Any

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        cls.browser = start_browser()
        cls.addClassCleanup(cls.browser.quit)  # type: ignore[attr-defined]

    def wait(self, timeout: float = 10) -> Any:
        """A wait that shrugs off the moment a page is being replaced (stale or not-yet-present elements)."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(
            self.browser, timeout, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
        )

    def wait_for(self, css: str, timeout: float = 10) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self.wait(timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def wait_for_text(self, css: str, text: str, timeout: float = 10) -> None:
        from selenium.webdriver.common.by import By

        self.wait(timeout).until(
            lambda d: d.find_element(By.CSS_SELECTOR, css).text == text,
            message=f"{css} never read {text!r}",
        )

    def click_and_load(self, element: Any, timeout: float = 15) -> None:
        """Click something that loads a new page, and return only once the new page is ready, so that no
        later lookup can find an element of the page being left. The old page is marked with a window
        property; a new document does not have it."""
        from selenium.common.exceptions import WebDriverException

        self.browser.execute_script("window.__visusLeaving = true;")
        element.click()

        def new_page_ready(driver: Any) -> bool:
            try:
                return bool(
                    driver.execute_script("return !window.__visusLeaving && document.readyState === 'complete';")
                )
            except WebDriverException:  # the script ran while the document was being swapped
                return False

        self.wait(timeout).until(new_page_ready, message="the click did not load a new page")

    def follow(self, link_text: str) -> None:
        from selenium.webdriver.common.by import By

        self.click_and_load(self.browser.find_element(By.LINK_TEXT, link_text))

    def submit(self, label: str) -> None:
        """Press the button labelled `label` and wait for the page the server answers with."""
        self.click_and_load(self.button(label))

    def button(self, label: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.XPATH, f"//button[normalize-space()='{label}']")

    def sign_in(self, email: str, password: str) -> None:
        from selenium.webdriver.common.by import By

        self.browser.delete_all_cookies()
        self.browser.get(f"{self.live_server_url}/accounts/login/")  # type: ignore[attr-defined]
        self.browser.find_element(By.NAME, "username").send_keys(email)
        self.browser.find_element(By.NAME, "password").send_keys(password)
        self.click_and_load(self.browser.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        self.wait_for("[data-testid=user-name], [data-testid=login-error]")
