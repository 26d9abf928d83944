"""``manage.py changepassword EMAIL --reason ...``: Django's command, but through the audited service.

Django's own command saves the password without an audit event; this app is listed before
``django.contrib.auth`` in ``INSTALLED_APPS`` so that this command replaces it.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from platform_core.accounts.models import User, normalize_email
from platform_core.accounts.services import user_password_set


class Command(BaseCommand):
    help = "Set a user's password from the console (audited as user.password_set, never the password itself)."
    requires_migrations_checks = True

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("email", help="The account's e-mail address.")
        parser.add_argument("--reason", required=True, help="Why the password is set (recorded in the audit trail).")

    def handle(self, *args: Any, email: str, reason: str, **options: Any) -> None:
        user = User.objects.filter(email=normalize_email(email)).first()
        if user is None:
            raise CommandError(f"No account with the e-mail address {email!r}.")
        for _ in range(3):
            first = getpass.getpass(f"New password for {user.email}: ")
            if first != getpass.getpass("Again: "):
                self.stderr.write("The passwords do not match.")
                continue
            try:
                user_password_set(actor=None, user=user, password=first, reason=reason)
            except ValidationError as exc:
                self.stderr.write("; ".join(exc.messages))
                continue
            self.stdout.write(f"Password of {user.email} changed (audited).")
            return
        raise CommandError("Too many failed attempts; the password is unchanged.")
