from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Q, QuerySet

from platform_core.accounts.models import Membership, Role, User
from platform_core.accounts.selectors import hospitals_for
from platform_core.audit.models import AuditEvent

AUDIT_ROLES = (Role.TRIAL_MANAGER, Role.MONITOR)

# The kernel knows no trial: apps above it widen what a reviewer sees by registering a scope provider
# (trials: every event of a trial where the user holds an audit role at a site), from AppConfig.ready().
AuditScopeProvider = Callable[[User, tuple[Role, ...]], Q]
_scope_providers: list[AuditScopeProvider] = []


def register_audit_scope(provider: AuditScopeProvider) -> AuditScopeProvider:
    """Add ``provider(user, roles) -> Q`` over AuditEvent; the events it matches become visible too."""
    if provider not in _scope_providers:
        _scope_providers.append(provider)
    return provider


# ...and hide what a reviewer must not see: apps register ``provider(user) -> Q`` of events to leave out (trials:
# every event of a trial where the user reads, since reads, references and predictions are in its events).
AuditExclusionProvider = Callable[[User], Q]
_exclusion_providers: list[AuditExclusionProvider] = []


def register_audit_exclusion(provider: AuditExclusionProvider) -> AuditExclusionProvider:
    if provider not in _exclusion_providers:
        _exclusion_providers.append(provider)
    return provider


def audit_events_for(user: User) -> QuerySet[AuditEvent]:
    """Events a trial manager or monitor may review, newest first: those recorded at their hospitals, and
    those the registered scope providers add (trials: every event of the trials where they hold that role
    at a site, trial-wide oversight), less those the exclusion providers hide (blind reading: nothing of a trial
    the user reads in)."""
    hospitals = hospitals_for(user, roles=AUDIT_ROLES)
    visible = Q(hospital_code__in=hospitals.values("code"))
    # Account events (failed sign-ins, locks, unlocks, password changes) carry no hospital: they are seen by the
    # reviewers of the hospitals where the account holds a role.
    # (As text in Python: a UUID cast to text in SQL has no hyphens on SQLite, unlike the events' object_id.)
    people = {str(pk) for pk in Membership.objects.filter(hospital__in=hospitals).values_list("user_id", flat=True)}
    visible |= Q(object_type=User._meta.label_lower, object_id__in=people)
    for provider in _scope_providers:
        visible |= provider(user, AUDIT_ROLES)
    events = AuditEvent.objects.filter(visible)
    for exclusion in _exclusion_providers:
        events = events.exclude(exclusion(user))
    return events.order_by("-seq")


# --- What a monitor reads: filters, and labels instead of keys (issue 10, item 6) ---------------------------
# The kernel cannot name a subject or a case, so the apps above it register, from AppConfig.ready():
# - object filters (a query parameter such as ``subject``: the value a reviewer types, turned into a Q over
#   AuditEvent, scoped to what they may see), and
# - labellers (per ``object_type``: the labels and links of many object ids at once, one query per type).


@dataclass(frozen=True)
class AuditObjectFilter:
    """``to_q(user, value)`` gives the events about that object, or None when the value names nothing the user
    may see (the page says so, and shows no events)."""

    name: str
    label: str
    help_text: str
    to_q: Callable[[User, str], Q | None]


@dataclass(frozen=True)
class ObjectLink:
    label: str
    url: str = ""


AuditLabeller = Callable[[User, list[str]], dict[str, ObjectLink]]
_object_filters: dict[str, AuditObjectFilter] = {}
_labellers: dict[str, AuditLabeller] = {}


def register_audit_object_filter(object_filter: AuditObjectFilter) -> None:
    _object_filters[object_filter.name] = object_filter


def audit_object_filters() -> list[AuditObjectFilter]:
    return list(_object_filters.values())


def register_audit_labeller(object_type: str, labeller: AuditLabeller) -> None:
    """``labeller(user, ids) -> {id: ObjectLink}`` for the events whose ``object_type`` it is; ids the user may
    not see are left out (the event then keeps the description recorded with it)."""
    _labellers[object_type] = labeller


@dataclass
class AuditFilters:
    actor: User | None = None
    action: str = ""
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    objects: dict[str, str] = field(default_factory=dict)  # object filter name -> value

    def as_record(self) -> dict[str, str]:
        """The filters as plain text (for the export's audit event and the file name)."""
        record = {
            "person": self.actor.email if self.actor else "",
            "action": self.action,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            **self.objects,
        }
        return {key: value for key, value in record.items() if value}


class UnknownAuditObject(ValueError):
    """An object filter's value names nothing the reviewer may see."""

    def __init__(self, name: str, value: str) -> None:
        super().__init__(name, value)
        self.name = name
        self.value = value


def audit_events_filtered(user: User, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """:func:`audit_events_for` narrowed by ``filters``, with the actor joined. Dates are UTC days.
    Raises UnknownAuditObject when an object filter's value names nothing the user may see."""
    events = audit_events_for(user).select_related("actor")
    if filters.actor is not None:
        events = events.filter(actor=filters.actor)
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.date_from:
        events = events.filter(occurred_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=UTC))
    if filters.date_to:
        end = datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=UTC)
        events = events.filter(occurred_at__lt=end)
    for name, value in filters.objects.items():
        object_filter = _object_filters.get(name)
        if object_filter is None or not value.strip():
            continue
        q = object_filter.to_q(user, value.strip())
        if q is None:
            raise UnknownAuditObject(name, value)
        events = events.filter(q)
    return events


def audit_people_for(user: User) -> QuerySet[User]:
    """The people who appear as actors in the events the user may review (for the person filter)."""
    return User.objects.filter(pk__in=audit_events_for(user).values("actor_id")).order_by("full_name", "email")


def audit_label(user: User, events: list[AuditEvent]) -> list[AuditEvent]:
    """Give each event ``object_link`` (an ObjectLink: a label and, where the user may open it, a link) and
    ``actor_label``: one query per object type on the page, whatever the number of events."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.object_type in _labellers and event.object_id:
            wanted[event.object_type].add(event.object_id)
    resolved = {object_type: _labellers[object_type](user, sorted(ids)) for object_type, ids in wanted.items()}
    for event in events:
        link = resolved.get(event.object_type, {}).get(event.object_id)
        event.object_link = link or ObjectLink(event.object_repr or event.object_type)  # type: ignore[attr-defined]
        actor = event.actor
        event.actor_label = (  # type: ignore[attr-defined]
            f"{actor.full_name} ({event.actor_email})" if actor and actor.full_name else event.actor_email or "system"
        )
    return events
