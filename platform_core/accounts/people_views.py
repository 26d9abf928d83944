"""People pages: a trial manager invites people, grants and revokes their roles, unlocks and deactivates
accounts at the hospitals they manage (accounts.selectors.managed_hospitals_for). Every write is a service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from platform_core.accounts import selectors, services
from platform_core.accounts.decorators import role_required
from platform_core.accounts.forms import (
    ExistingAccountRoleForm,
    InvitationAcceptForm,
    InvitationForm,
    ReasonForm,
    RoleGrantForm,
)
from platform_core.accounts.models import Role, User
from platform_core.accounts.requests import signed_in_user
from platform_core.errors import ApplicationError
from platform_core.forms import run_service


@role_required(Role.TRIAL_MANAGER)
def people_list(request: HttpRequest) -> HttpResponse:
    manager = signed_in_user(request)
    people = list(selectors.people_with_sign_in_state(manager))
    roles: dict[Any, list[Any]] = {}
    for membership in selectors.memberships_managed_by(manager).filter(is_active=True):
        roles.setdefault(membership.user_id, []).append(membership)
    rows = [{"person": person, "memberships": roles.get(person.pk, [])} for person in people]
    invitations = selectors.invitations_for(manager).filter(accepted_at__isnull=True, revoked_at__isnull=True)
    return render(
        request,
        "accounts/people_list.html",
        {
            "rows": rows,
            "invitations": invitations,
            "hospitals": selectors.managed_hospitals_for(manager),
        },
    )


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def people_invite(request: HttpRequest) -> HttpResponse:
    manager = signed_in_user(request)
    form = InvitationForm(request.POST or None, hospitals=selectors.managed_hospitals_for(manager))
    if request.method == "POST" and form.is_valid():
        link_base = request.build_absolute_uri(reverse("accounts:invitation-accept", args=["TOKEN"]))
        invitation = run_service(
            form,
            lambda: services.invitation_create(
                actor=manager, **form.cleaned_data, link_base=link_base.removesuffix("TOKEN/")
            ),
        )
        if invitation is not None:
            messages.success(
                request,
                f"Invitation sent to {invitation.email}: {invitation.get_role_display()} at "
                f"{invitation.hospital.code}. The link works once, for {settings.VISUS_INVITATION_DAYS} days.",
            )
            return redirect("accounts:people")
    return render(
        request,
        "accounts/people_form.html",
        {"form": form, "title": "Invite someone", "button": "Send invitation", "intro": _INVITE_INTRO},
        status=400 if form.errors else 200,
    )


_INVITE_INTRO = (
    "They get an e-mail with a link to choose their password. The link works once and expires; their role "
    "starts when they accept. For someone of your hospitals use “Add an existing account”; someone whose account "
    "is at another hospital is told by the e-mail that an administrator gives them the role."
)


@role_required(Role.TRIAL_MANAGER)
@require_http_methods(["GET", "POST"])
def people_add_existing(request: HttpRequest) -> HttpResponse:
    manager = signed_in_user(request)
    form = ExistingAccountRoleForm(request.POST or None, hospitals=selectors.managed_hospitals_for(manager))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        # Only the accounts of the manager's own hospitals: another hospital's account gets its first role here
        # from an administrator. One answer for "no account" and "not yours": the page does not tell them apart.
        person = selectors.people_for(manager).filter(email__iexact=data["email"].strip()).first()
        if person is None:
            form.add_error("email", NOT_AT_YOUR_HOSPITALS)
        else:
            membership = run_service(
                form,
                lambda: services.person_role_grant(
                    actor=manager, user=person, hospital=data["hospital"], role=data["role"], reason=data["reason"]
                ),
            )
            if membership is not None:
                messages.success(
                    request, f"{person} is now {membership.get_role_display()} at {membership.hospital.code}."
                )
                return redirect("accounts:person", pk=person.pk)
    return render(
        request,
        "accounts/people_form.html",
        {
            "form": form,
            "title": "Give a role to an existing account",
            "button": "Grant role",
            "intro": (
                "For someone who holds, or held, a role at one of your hospitals (a coordinator who will also read, "
                "a role revoked earlier). An account of another hospital gets its first role here from an "
                "administrator."
            ),
        },
        status=400 if form.errors else 200,
    )


NOT_AT_YOUR_HOSPITALS = (
    "No account at your hospitals has this address. Invite a new person; for someone with an account at another "
    "hospital, ask an administrator."
)


def _person(request: HttpRequest, pk: str) -> User:
    return get_object_or_404(selectors.people_for(signed_in_user(request)), pk=pk)


def _person_page(request: HttpRequest, person: User, *, status: int = 200, **forms_: forms.Form) -> HttpResponse:
    manager = signed_in_user(request)
    hospitals = selectors.managed_hospitals_for(manager)
    context = {
        "person": person,
        "memberships": selectors.memberships_managed_by(manager, person),
        "elsewhere": selectors.memberships_elsewhere(manager, person).exists(),
        "grant_form": forms_.get("grant_form") or RoleGrantForm(hospitals=hospitals, prefix="grant"),
        "revoke_form": forms_.get("revoke_form") or ReasonForm(prefix="revoke"),
        "unlock_form": forms_.get("unlock_form") or ReasonForm(prefix="unlock"),
        "deactivate_form": forms_.get("deactivate_form") or ReasonForm(prefix="deactivate"),
        "is_self": person.pk == manager.pk,
        # A fellow manager's trial manager role is revoked by an administrator (services._refuse_fellow_manager).
        "may_remove_managers": manager.is_superuser,
    }
    return render(request, "accounts/person_detail.html", context, status=status)


@role_required(Role.TRIAL_MANAGER)
def person_detail(request: HttpRequest, pk: str) -> HttpResponse:
    return _person_page(request, _person(request, pk))


@role_required(Role.TRIAL_MANAGER)
@require_POST
def person_grant(request: HttpRequest, pk: str) -> HttpResponse:
    manager, person = signed_in_user(request), _person(request, pk)
    form = RoleGrantForm(request.POST, hospitals=selectors.managed_hospitals_for(manager), prefix="grant")
    if form.is_valid():
        done = run_service(form, lambda: services.person_role_grant(actor=manager, user=person, **form.cleaned_data))
        if done is not None:
            messages.success(request, f"{person} is now {done.get_role_display()} at {done.hospital.code}.")
            return redirect("accounts:person", pk=person.pk)
    return _person_page(request, person, status=400, grant_form=form)


@role_required(Role.TRIAL_MANAGER)
@require_POST
def person_revoke(request: HttpRequest, pk: str, membership_pk: str) -> HttpResponse:
    manager, person = signed_in_user(request), _person(request, pk)
    membership = get_object_or_404(selectors.memberships_managed_by(manager, person), pk=membership_pk)
    form = ReasonForm(request.POST, prefix="revoke")
    if form.is_valid():
        done = run_service(
            form,
            lambda: services.person_role_revoke(
                actor=manager, membership=membership, reason=form.cleaned_data["reason"]
            ),
        )
        if done is not None:
            messages.success(request, f"{done.get_role_display()} at {done.hospital.code} revoked from {person}.")
            return redirect("accounts:person", pk=person.pk)
    return _person_page(request, person, status=400, revoke_form=form)


def _reasoned(
    request: HttpRequest, pk: str, prefix: str, service: Callable[..., User], done_message: str
) -> HttpResponse:
    manager, person = signed_in_user(request), _person(request, pk)
    form = ReasonForm(request.POST, prefix=prefix)
    if form.is_valid():
        done = run_service(form, lambda: service(actor=manager, user=person, reason=form.cleaned_data["reason"]))
        if done is not None:
            messages.success(request, done_message.format(person=person))
            return redirect("accounts:person", pk=person.pk)
    return _person_page(request, person, status=400, **{f"{prefix}_form": form})


@role_required(Role.TRIAL_MANAGER)
@require_POST
def person_unlock(request: HttpRequest, pk: str) -> HttpResponse:
    return _reasoned(request, pk, "unlock", services.person_unlock, "{person}'s account is unlocked.")


@role_required(Role.TRIAL_MANAGER)
@require_POST
def person_deactivate(request: HttpRequest, pk: str) -> HttpResponse:
    return _reasoned(
        request, pk, "deactivate", services.person_deactivate, "{person}'s account is deactivated: they cannot sign in."
    )


@role_required(Role.TRIAL_MANAGER)
@require_POST
def invitation_revoke(request: HttpRequest, pk: str) -> HttpResponse:
    manager = signed_in_user(request)
    invitation = get_object_or_404(selectors.invitations_for(manager), pk=pk)
    form = ReasonForm(request.POST)
    if form.is_valid():
        done = run_service(
            form,
            lambda: services.invitation_revoke(
                actor=manager, invitation=invitation, reason=form.cleaned_data["reason"]
            ),
        )
        if done is not None:
            messages.success(request, f"The invitation of {invitation.email} was withdrawn.")
            return redirect("accounts:people")
    for error in [*form.non_field_errors(), *form.errors.get("reason", [])]:
        messages.error(request, f"The invitation of {invitation.email} was not withdrawn: {error}")
    return redirect("accounts:people")


# The invited person is not signed in: the token in the link is their only credential.
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = services.invitation_by_token(token)
        services.invitation_require_usable(invitation)
    except ApplicationError as exc:
        return render(request, "accounts/invitation_invalid.html", {"message": exc.message}, status=exc.status)
    form = InvitationAcceptForm(request.POST or None, initial={"full_name": invitation.full_name})
    if request.method == "POST" and form.is_valid():
        user = run_service(
            form,
            lambda: services.invitation_accept(
                token=token, full_name=form.cleaned_data["full_name"], password=form.cleaned_data["password1"]
            ),
        )
        if user is not None:
            messages.success(request, "Your account is ready. Sign in with your e-mail and the password you chose.")
            return redirect("accounts:login")
    return render(
        request,
        "accounts/invitation_accept.html",
        {"form": form, "invitation": invitation},
        status=400 if form.errors else 200,
    )
