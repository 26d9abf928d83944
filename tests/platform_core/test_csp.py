"""Content-Security-Policy with no inline script (issue 13, item 9): the header on every page, no inline script in
any template, and the pages that run the most script (plots, API docs) working under it in Chromium."""

import re
from pathlib import Path

from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import TestCase, tag

from tests.support import ROOT, BrowserTestCase
from tests.support.factories import TEST_PASSWORD, TrialWorld

INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>(?P<body>.*?)</script>", re.S | re.I)
EVENT_ATTRIBUTE = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']\s*javascript:""", re.I)


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


class CspHeaderTests(TestCase):
    def test_pages_and_api_carry_a_policy_without_inline_script(self):
        w = TrialWorld()
        self.client.force_login(w.manager)
        for url in ("/", f"/trials/{w.trial.slug}/", "/api/v1/me/", "/accounts/login/"):
            with self.subTest(url=url):
                response = self.client.get(url)
                policy = directives(response["Content-Security-Policy"])
                self.assertEqual(policy["script-src"], ["'self'"])
                self.assertEqual(policy["object-src"], ["'none'"])
                self.assertEqual(policy["frame-ancestors"], ["'none'"])
                self.assertNotIn("'unsafe-eval'", " ".join(sum(policy.values(), [])))


class TemplateScriptTests(TestCase):
    """No template carries script code the policy would block: code lives in static/js and data travels in
    json_script blocks or data-* attributes. A new inline <script>, on* handler or javascript: URL fails here."""

    def test_no_template_has_inline_script_event_handlers_or_javascript_urls(self):
        problems = []
        for path in sorted((ROOT / "templates").rglob("*.html")):
            text = path.read_text()
            where = path.relative_to(ROOT)
            for match in INLINE_SCRIPT.finditer(text):
                if match.group("body").strip():
                    problems.append(f"{where}: inline <script> with code")
            if EVENT_ATTRIBUTE.search(text):
                problems.append(f"{where}: an on* event attribute")
            if JS_URL.search(text):
                problems.append(f"{where}: a javascript: URL")
        self.assertEqual(problems, [])

    def test_the_check_finds_an_inline_script(self):
        self.assertTrue(INLINE_SCRIPT.search("<p>x</p><script>\n alert(1)\n</script>"))
        self.assertTrue(EVENT_ATTRIBUTE.search('<button type="button" onclick="go()">'))
        self.assertTrue(JS_URL.search('<a href="javascript:go()">'))
        self.assertFalse(INLINE_SCRIPT.search('<script src="/static/js/x.js"></script>'))
        self.assertTrue(Path(ROOT / "templates").is_dir())


@tag("browser")
class CspInBrowserTests(BrowserTestCase, StaticLiveServerTestCase):
    """Chromium reports every blocked script or style as a securitypolicyviolation event: there must be none."""

    def setUp(self):
        self.browser.delete_all_cookies()
        self.w = TrialWorld()
        self.browser.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument",
            {
                "source": "window.__csp = []; document.addEventListener('securitypolicyviolation', "
                "function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });"
            },
        )

    def violations(self) -> list[str]:
        return self.browser.execute_script("return window.__csp || [];")

    def test_the_trial_page_plot_and_the_api_docs_work_under_the_policy(self):
        self.sign_in(self.w.manager.email, TEST_PASSWORD)
        self.browser.get(f"{self.live_server_url}/trials/{self.w.trial.slug}/")
        self.wait_for(".main-svg")  # plotly drew the accrual chart
        self.assertEqual(self.violations(), [])
        self.browser.get(f"{self.live_server_url}/api/docs/")
        self.wait_for(".swagger-ui .opblock", timeout=20)  # Swagger UI ran and listed the operations
        self.assertEqual(self.violations(), [])
