"""Django's test runner with a fast password hasher (argon2 is tested on its own, deliberately)."""

import logging

from django.conf import settings
from django.test.runner import DiscoverRunner


class VisusTestRunner(DiscoverRunner):
    def suite_result(self, suite, result, **kwargs):  # noqa: ANN001, ANN201
        failed = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
        skipped = len(result.skipped)
        passed = result.testsRun - failed - skipped
        # The plain closing line CI reads: "N passed, N failed, N skipped".
        print(f"{passed} passed, {failed} failed, {skipped} skipped")
        return super().suite_result(suite, result, **kwargs)

    def setup_test_environment(self, **kwargs: object) -> None:
        super().setup_test_environment(**kwargs)
        # Hash with MD5 for speed; argon2 stays available to check existing hashes.
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
        # Expected 4xx responses are the point of many tests; keep the output readable.
        logging.getLogger("django.request").setLevel(logging.ERROR)
        logging.getLogger("django.server").setLevel(logging.ERROR)
