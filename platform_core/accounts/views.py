from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from platform_core.accounts.forms import LoginForm, PasswordChangeForm
from platform_core.accounts.middleware import SESSION_KEY
from platform_core.accounts.requests import signed_in_user
from platform_core.accounts.services import login_success_record, user_password_change


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict:
        context = super().get_context_data(**kwargs)
        context["lockout_threshold"] = settings.VISUS_LOCKOUT_THRESHOLD
        context["lockout_minutes"] = settings.VISUS_LOCKOUT_MINUTES
        context["idle_minutes"] = settings.VISUS_IDLE_TIMEOUT_MINUTES
        return context

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        user = form.get_user()
        login_success_record(user=user)
        login(self.request, user)
        self.request.session[SESSION_KEY] = timezone.now().timestamp()
        return redirect(self.get_success_url())


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@login_required
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user_password_change(
                user=signed_in_user(request),
                old_password=form.cleaned_data["old_password"],
                new_password=form.cleaned_data["new_password1"],
            )
        except ValidationError as exc:
            if signed_in_user(request).is_locked:
                # Wrong current passwords lock the account like failed sign-ins; the session ends with it.
                logout(request)
                messages.error(request, exc.message_dict["old_password"][-1])
                return redirect("accounts:login")
            for field, errors in exc.message_dict.items():
                target = "new_password1" if field in ("__all__", "new_password") else field
                for error in errors:
                    form.add_error(target if target in form.fields else None, error)
        else:
            update_session_auth_hash(request, signed_in_user(request))
            messages.success(request, "Your password was changed.")
            return redirect("home")
    return render(request, "accounts/password_change.html", {"form": form})


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


def admin_login(request: HttpRequest) -> HttpResponse:
    """The Django admin signs in through Visus's own login page, so admin sign-ins get the same lock-out,
    throttle and audit trail as everyone else's."""
    from urllib.parse import urlencode

    from django.core.exceptions import PermissionDenied
    from django.urls import reverse
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.GET.get("next") or reverse("admin:index")
    hosts = {request.get_host()}
    if not url_has_allowed_host_and_scheme(target, allowed_hosts=hosts, require_https=request.is_secure()):
        target = reverse("admin:index")
    if request.user.is_authenticated:
        if request.user.is_active and request.user.is_staff:
            return redirect(target)
        raise PermissionDenied("Your account has no access to the administration pages.")
    return redirect(f"{reverse('accounts:login')}?{urlencode({'next': target})}")
