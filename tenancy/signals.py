"""Sign-ins and failed sign-ins go to the audit log; deleting a user revokes the keys they made; changes to
keys, credentials, routes, budgets, rate limits, cache settings, orgs and memberships drop the proxy's cached
copies once committed (proxy.invalidation)."""

from functools import partial

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import receiver

from proxy.invalidation import CACHE, CREDENTIALS, GUARDRAILS, KEY, LIMITS, ORG, ROUTES, STORAGE, publish

from .audit import Actor, audit_record, client_ip
from .models import (
    APIKey,
    Budget,
    CacheSettings,
    GuardrailPolicy,
    Membership,
    Organization,
    ProviderCredential,
    RateLimit,
    Route,
    RouteTarget,
    StorageExport,
)
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


# --- the proxy's caches -----------------------------------------------------------------------------------


@receiver([post_save, post_delete], sender=APIKey, dispatch_uid="proxy-key-changed")
def key_changed(sender, instance: APIKey, **kwargs) -> None:
    transaction.on_commit(partial(publish, KEY, instance.prefix))


@receiver([post_save, post_delete], sender=ProviderCredential, dispatch_uid="proxy-credential-changed")
def credential_changed(sender, instance: ProviderCredential, **kwargs) -> None:
    transaction.on_commit(partial(publish, CREDENTIALS, str(instance.org_id)))


@receiver([post_save, post_delete], sender=Route, dispatch_uid="proxy-route-changed")
def route_changed(sender, instance: Route, **kwargs) -> None:
    transaction.on_commit(partial(publish, ROUTES, str(instance.org_id)))


@receiver([post_save, post_delete], sender=RouteTarget, dispatch_uid="proxy-route-target-changed")
def route_target_changed(sender, instance: RouteTarget, **kwargs) -> None:
    # Targets written in bulk by tenancy.routes send no signal; their route's save does.
    org_id = Route.objects.filter(pk=instance.route_id).values_list("org_id", flat=True).first()
    if org_id is not None:
        transaction.on_commit(partial(publish, ROUTES, str(org_id)))


@receiver([post_save, post_delete], sender=Budget, dispatch_uid="proxy-budget-changed")
@receiver([post_save, post_delete], sender=RateLimit, dispatch_uid="proxy-rate-limit-changed")
def limits_changed(sender, instance: Budget | RateLimit, **kwargs) -> None:
    transaction.on_commit(partial(publish, LIMITS, str(instance.org_id)))


@receiver([post_save, post_delete], sender=CacheSettings, dispatch_uid="proxy-cache-settings-changed")
def cache_settings_changed(sender, instance: CacheSettings, **kwargs) -> None:
    transaction.on_commit(partial(publish, CACHE, str(instance.org_id)))


@receiver([post_save, post_delete], sender=StorageExport, dispatch_uid="records-storage-changed")
def storage_export_changed(sender, instance: StorageExport, **kwargs) -> None:
    # The record writer learns at once whether the org's bodies now go only to its bucket.
    transaction.on_commit(partial(publish, STORAGE, str(instance.org_id)))


@receiver([post_save, post_delete], sender=GuardrailPolicy, dispatch_uid="proxy-guardrail-policy-changed")
def guardrail_policy_changed(sender, instance: GuardrailPolicy, **kwargs) -> None:
    transaction.on_commit(partial(publish, GUARDRAILS, str(instance.org_id)))


@receiver([post_save, post_delete], sender=Organization, dispatch_uid="proxy-org-changed")
def org_changed(sender, instance: Organization, **kwargs) -> None:
    transaction.on_commit(partial(publish, ORG, str(instance.pk)))
    # The org's time zone sets where its budget periods begin.
    transaction.on_commit(partial(publish, LIMITS, str(instance.pk)))


# A key's scopes follow its creator's current role (tenancy.permissions.ROLE_SCOPES). The cached key carries its
# creator's role: a change of the creator's membership, or of the user (deactivated, staff taken away), drops
# exactly the keys they made. Sign-ins (a last_login stamp) change nothing that counts.


def _drop_keys_made_by(user_id: int, org_id: int | None = None) -> None:
    made = APIKey.objects.filter(created_by_id=user_id)
    if org_id is not None:
        made = made.filter(org_id=org_id)
    for prefix in made.values_list("prefix", flat=True):
        transaction.on_commit(partial(publish, KEY, prefix))


@receiver([post_save, post_delete], sender=Membership, dispatch_uid="proxy-creator-membership-changed")
def creator_membership_changed(sender, instance: Membership, **kwargs) -> None:
    _drop_keys_made_by(instance.user_id, instance.org_id)


@receiver(post_save, sender=get_user_model(), dispatch_uid="proxy-creator-changed")
def creator_changed(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    _drop_keys_made_by(instance.pk)
