"""API tokens end with the credentials they were issued for, whichever code path saves the user."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from platform_core.accounts.models import ApiToken, User
from platform_core.accounts.services import api_tokens_revoke


@receiver(post_save, sender=User, dispatch_uid="accounts.revoke_api_tokens")
def revoke_api_tokens(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    if created:
        return
    # AbstractBaseUser keeps the raw password in _password from set_password() until save() has run
    # (it is reset before the silent re-hash of check_password, which is not a change).
    if getattr(instance, "_password", None) is not None:
        reason = "password changed"
    elif not instance.is_active:
        reason = "account deactivated"
    elif instance.is_locked:
        reason = "account locked"
    else:
        return
    if ApiToken.objects.filter(user=instance).exists():
        api_tokens_revoke(user=instance, reason=reason)
