"""Changes to keys, credentials and orgs drop the proxy's cached copies once the change is committed."""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from observability.models import ObservabilitySettings
from prompts.models import Label, Prompt
from tenancy.models import APIKey, Organization, ProviderCredential

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


@receiver([post_save, post_delete], sender=Label, dispatch_uid="proxy-label-moved")
@receiver([post_save, post_delete], sender=Prompt, dispatch_uid="proxy-prompt-changed")
def prompt_changed(sender, instance, **kwargs) -> None:
    # Label moves are rare: every process drops its resolved prompts and reads them again.
    transaction.on_commit(partial(publish, "prompts", ""))
