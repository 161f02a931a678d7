"""Sign-ins and failed sign-ins go to the audit log; deleting a user revokes the keys they made."""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from .audit import Actor, audit_record, client_ip
from .permissions import Principal
from .services import api_keys_revoke_made_by


def _ip(request) -> str | None:
    if request is None:
        return None
    return client_ip(request)


def _via(request) -> str:
    path = getattr(request, "path", "") or ""
    return "admin" if path.startswith("/admin/") else "web"


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs) -> None:
    audit_record(
        actor=Actor(principal=Principal.for_user(user), ip=_ip(request), via=_via(request)),
        action="login",
        obj=user,
        object_repr=user.get_username(),
    )


@receiver(user_login_failed)
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    # `credentials` has the password already replaced by Django's cleanser; only the username is kept.
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        actor=Actor(principal=Principal(), ip=_ip(request), via=_via(request)),
        action="login_failed",
        object_repr=username,
        changes={"username": username},
    )


@receiver(pre_delete, sender=get_user_model(), dispatch_uid="tenancy-revoke-keys-of-deleted-user")
def revoke_keys_of_deleted_user(sender, instance, **kwargs) -> None:
    # A signal, not the admin's delete: users also go away in the shell, in bulk and by cascade.
    api_keys_revoke_made_by(actor=Actor.system("user-delete"), user=instance)
