"""The pages people open: every URL pattern of the project (tests.support.urls walk/fill), requested as each role
until one of them gets an HTML page. Walks over pages (accessibility, narrow screens, form markup) use these, so a
page added later is checked without being listed anywhere."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any

from django.test import Client
from django.urls import get_resolver

from tests.support.urls import fill, walk

# The API answers JSON, the admin is Django's own, static and media are files.
NOT_PAGES = ("api/", "admin/", "static/", "media/")


def html_pages(
    users: Sequence[Any], values: dict[str, list[str]], *, skip: tuple[str, ...] = ()
) -> list[tuple[Any, str]]:
    """(user, path) for each URL pattern that answers a GET with an HTML page (200) to one of ``users``, tried in
    order: one path per pattern, the first role that may see it."""
    clients: dict[Any, Client] = {}
    found: list[tuple[Any, str]] = []
    for route, _pattern in walk(get_resolver().url_patterns):
        if route.startswith(NOT_PAGES + skip):
            continue
        page = _first_page(route, users, values, clients)
        if page is not None:
            found.append(page)
    return found


def _first_page(route: str, users: Sequence[Any], values: dict, clients: dict) -> tuple[Any, str] | None:
    for path in fill(route, values):
        for user in users:
            if user not in clients:
                clients[user] = Client()
                clients[user].force_login(user)
            response = clients[user].get(path)
            if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
                return user, path
    return None


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.references: list[tuple[str, str, str]] = []  # (attribute, id, tag)
        self.forms: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        for name in ("aria-describedby", "aria-labelledby", "aria-controls", "aria-errormessage"):
            for ref in (attributes.get(name) or "").split():
                self.references.append((name, ref, tag))
        if tag == "label" and attributes.get("for"):
            self.references.append(("for", str(attributes["for"]), tag))
        if tag == "form":
            self.forms.append(attributes)


def dangling_references(html: str) -> list[str]:
    """ARIA id references (aria-describedby, aria-labelledby...) and label ``for`` that name no element."""
    parser = _Ids()
    parser.feed(html)
    return [f'<{tag} {attr}="{ref}">' for attr, ref, tag in parser.references if ref not in parser.ids]


def self_posting_forms(html: str) -> int:
    """How many POST forms on the page submit to the page itself (no action, or an empty one)."""
    parser = _Ids()
    parser.feed(html)
    return sum(
        1 for form in parser.forms if (form.get("method") or "").lower() == "post" and not (form.get("action") or "")
    )


def has_form(html: str) -> bool:
    return bool(re.search(r"<form\b", html))
