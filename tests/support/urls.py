"""Every URL pattern of the project, and concrete paths for them: the walks over all endpoints use these."""

from __future__ import annotations

import itertools
import re

from django.urls import URLPattern, URLResolver


def walk(patterns, prefix=""):
    """Yield (route, pattern) for every URL pattern, following includes."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


PARAM = re.compile(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>")


def fill(route: str, values: dict[str, list[str]]) -> list[str]:
    """Concrete paths for a route, trying each candidate value for each parameter."""
    route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    names = [m.group("name") for m in PARAM.finditer(route)]
    if "(?P<" in route:  # regex routes (admin, static): use named groups
        names = re.findall(r"\(\?P<(\w+)>[^)]*\)", route)
        template = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: "{" + m.group(1) + "}", route)
    else:
        template = PARAM.sub(lambda m: "{" + m.group("name") + "}", route)
    if not names:
        return ["/" + template]
    choices = [values.get(name, values["*"]) for name in names]
    return ["/" + template.format(**dict(zip(names, combo, strict=True))) for combo in itertools.product(*choices)]


def walk_named(patterns, prefix="", namespace=""):
    """Yield (name, route, pattern) for every URL pattern, following includes: ``name`` is the pattern's name
    with its namespaces ("api:trials:case-detail"), or its route when it has none."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from walk_named(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            yield (f"{namespace}{entry.name}" if entry.name else route), route, entry
