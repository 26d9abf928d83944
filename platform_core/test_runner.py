"""Django's test runner with a fast password hasher (argon2 is tested on its own, deliberately).

On PostgreSQL the audit table refuses TRUNCATE (migration audit.0003), which is how Django empties the test
database after each TransactionTestCase. The runner lets only that flush through, by running it with the
database's triggers off (session_replication_role = replica, which needs the superuser the suite runs as);
the tests of the triggers themselves run with them on.
"""

import logging
from typing import Any

from django.conf import settings
from django.test.runner import DiscoverRunner


class VisusTestRunner(DiscoverRunner):
    def suite_result(self, suite, result, **kwargs):
        failed = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
        skipped = len(result.skipped)
        passed = result.testsRun - failed - skipped
        # The plain closing line CI reads: "N passed, N failed, N skipped".
        print(f"{passed} passed, {failed} failed, {skipped} skipped")
        return super().suite_result(suite, result, **kwargs)

    def setup_test_environment(self, **kwargs: Any) -> None:
        super().setup_test_environment(**kwargs)
        _flush_past_the_audit_triggers()
        # Hash with MD5 for speed; argon2 stays available to check existing hashes.
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
        # Expected 4xx responses are the point of many tests; keep the output readable.
        logging.getLogger("django.request").setLevel(logging.ERROR)
        logging.getLogger("django.server").setLevel(logging.ERROR)
        logging.getLogger("visus.audit").setLevel(logging.WARNING)  # anchors written by the audit tests


def _flush_past_the_audit_triggers() -> None:
    from django.db.backends.postgresql.operations import DatabaseOperations

    if getattr(DatabaseOperations.sql_flush, "visus_test_flush", False):
        return
    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        if statements and "audit_auditevent" in tables:
            # SET LOCAL: flush runs these in one transaction; the triggers are back on when it ends.
            return ["SET LOCAL session_replication_role = replica", *statements]
        return statements

    sql_flush.visus_test_flush = True  # type: ignore[attr-defined]
    DatabaseOperations.sql_flush = sql_flush  # type: ignore[method-assign]
