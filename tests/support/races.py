"""Two transactions of Visus interleaved at a chosen point (PostgreSQL, real threads, each with its own connection):
the pattern of the lock-order tests. A deadlock shows as PostgreSQL's "deadlock detected" in one of the two."""

from __future__ import annotations

import pkgutil
import threading
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

from django.db import connection, transaction


def _someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid())"
        )
        return bool(cursor.fetchone()[0])


def paused_race(pause_at: str, first: Callable[[], Any], second: Callable[[], Any]) -> list[Exception]:
    """Run ``first`` in a thread until it calls ``pause_at`` (the dotted path of a function, patched for the run),
    hold it there while ``second`` runs in another thread until it waits for a lock, then let ``first`` go on: two
    web workers whose transactions interleave at that point. Each thread has its own connection and the services'
    own transactions. Returns the exceptions (a deadlock is PostgreSQL's "deadlock detected", raised in one of the
    two after its deadlock_timeout), and an AssertionError when ``second`` never waited for ``first`` (finished
    alone, or ran 30 s without waiting): the two did not overlap."""
    original = pkgutil.resolve_name(pause_at)
    paused, go = threading.Event(), threading.Event()
    errors: list[Exception] = []
    threads: dict[str, threading.Thread] = {}

    def pausing(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threads["first"] and not paused.is_set():
            paused.set()
            go.wait(timeout=60)
        return original(*args, **kwargs)

    def run(work: Callable[[], Any]) -> None:
        try:
            work()
        except Exception as exc:  # collected: the test asserts there are none
            errors.append(exc)
        finally:
            connection.close()

    with mock.patch(pause_at, new=pausing):
        threads["first"] = threading.Thread(target=run, args=(first,))
        threads["second"] = threading.Thread(target=run, args=(second,))
        threads["first"].start()
        paused.wait(timeout=60)
        if not paused.is_set() or not threads["first"].is_alive():
            go.set()
            threads["first"].join(timeout=60)
            return [*errors, AssertionError(f"the first never reached {pause_at}")]
        threads["second"].start()
        deadline = time.monotonic() + 30
        waited = False
        while threads["second"].is_alive() and not waited and time.monotonic() < deadline:
            waited = _someone_waits_for_a_lock()
            time.sleep(0.05)
        go.set()
        for thread in threads.values():
            thread.join(timeout=120)
    if not waited:  # the second never waited for the first: the two did not overlap, and the test proves nothing
        errors.append(AssertionError("the second ran without waiting for a lock the first held"))
    return errors


def while_held(hold: Callable[[], Any], act: Callable[[], Any]) -> tuple[Any, list[Exception]]:
    """Run ``hold`` in a thread, in a transaction kept open until ``act`` has run here in a transaction of its own
    under a 1 s lock timeout: ``act`` raises PostgreSQL's lock timeout if it waits for a lock that ``hold`` took.
    Returns what ``act`` returned and the thread's exceptions."""
    held, release = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def run() -> None:
        try:
            with transaction.atomic():
                hold()
                held.set()
                release.wait(timeout=10)
        except Exception as exc:  # collected: the test asserts there are none
            errors.append(exc)
        finally:
            held.set()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        if not held.wait(timeout=30):
            raise AssertionError("the holding transaction never took its locks")
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '1s'")
            result = act()
    finally:
        release.set()
        thread.join(timeout=30)
    return result, errors


def interleaved(first: Callable[[], Any], second: Callable[[], Any]) -> list[Exception]:
    """Run ``first`` in a transaction that, once its work is done and before it commits, waits up to 2 s for
    ``second`` (started then in another thread, with its own connection) to finish: two web workers whose
    statements interleave. Unordered, ``second`` commits while ``first`` is still open and neither sees the
    other's change; ordered by the queue lock, ``second`` waits for ``first``'s commit. Returns the exceptions."""
    first_done, second_done = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def run_first() -> None:
        try:
            with transaction.atomic():
                first()
                first_done.set()
                second_done.wait(timeout=2)
        except Exception as exc:  # collected: the test asserts there are none
            errors.append(exc)
        finally:
            first_done.set()
            connection.close()

    def run_second() -> None:
        try:
            first_done.wait(timeout=60)
            second()
        except Exception as exc:  # collected: the test asserts there are none
            errors.append(exc)
        finally:
            second_done.set()
            connection.close()

    threads = [threading.Thread(target=run_first), threading.Thread(target=run_second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors
