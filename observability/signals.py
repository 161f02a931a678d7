"""A change of an org's observability settings drops the proxy's cached credentials of that org once committed:
the body-capture policy is cached with them (proxy.invalidation)."""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from proxy.invalidation import CREDENTIALS, publish

from .models import ObservabilitySettings


@receiver([post_save, post_delete], sender=ObservabilitySettings, dispatch_uid="proxy-observability-changed")
def observability_changed(sender, instance: ObservabilitySettings, **kwargs) -> None:
    transaction.on_commit(partial(publish, CREDENTIALS, str(instance.org_id)))
