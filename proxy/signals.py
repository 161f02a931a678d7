"""Changes to keys, credentials and orgs drop the proxy's cached copies once the change is committed."""

from functools import partial

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from observability.models import ObservabilitySettings
from prompts.models import Label, Prompt
from tenancy.models import APIKey, Membership, Organization, ProviderCredential

from .invalidation import publish


@receiver([post_save, post_delete], sender=APIKey, dispatch_uid="proxy-key-changed")
def key_changed(sender, instance: APIKey, **kwargs) -> None:
    transaction.on_commit(partial(publish, "key", instance.prefix))


@receiver([post_save, post_delete], sender=ProviderCredential, dispatch_uid="proxy-credential-changed")
def credential_changed(sender, instance: ProviderCredential, **kwargs) -> None:
    transaction.on_commit(partial(publish, "credentials", str(instance.org_id)))


@receiver([post_save, post_delete], sender=ObservabilitySettings, dispatch_uid="proxy-observability-changed")
def observability_changed(sender, instance: ObservabilitySettings, **kwargs) -> None:
    transaction.on_commit(partial(publish, "credentials", str(instance.org_id)))  # the body policy is cached with them


@receiver([post_save, post_delete], sender=Organization, dispatch_uid="proxy-org-changed")
def org_changed(sender, instance: Organization, **kwargs) -> None:
    transaction.on_commit(partial(publish, "org", str(instance.pk)))


# --- a key's scopes follow its creator's current role (tenancy.permissions.ROLE_SCOPES) -----------------
# The cached key carries its creator's role: a change of the creator's membership, or of the user (deactivated,
# staff taken away), drops exactly the keys they made. Sign-ins (a last_login stamp) change nothing that counts.


def _drop_keys_made_by(user_id: int, org_id: int | None = None) -> None:
    made = APIKey.objects.filter(created_by_id=user_id)
    if org_id is not None:
        made = made.filter(org_id=org_id)
    for prefix in made.values_list("prefix", flat=True):
        transaction.on_commit(partial(publish, "key", prefix))


@receiver([post_save, post_delete], sender=Membership, dispatch_uid="proxy-creator-membership-changed")
def creator_membership_changed(sender, instance: Membership, **kwargs) -> None:
    _drop_keys_made_by(instance.user_id, instance.org_id)


@receiver(post_save, sender=get_user_model(), dispatch_uid="proxy-creator-changed")
def creator_changed(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    _drop_keys_made_by(instance.pk)


@receiver([post_save, post_delete], sender=Label, dispatch_uid="proxy-label-moved")
@receiver([post_save, post_delete], sender=Prompt, dispatch_uid="proxy-prompt-changed")
def prompt_changed(sender, instance, **kwargs) -> None:
    # Label moves are rare: every process drops its resolved prompts and reads them again.
    transaction.on_commit(partial(publish, "prompts", ""))
