"""A label move or a prompt change drops the proxy's resolved prompts once committed (proxy.invalidation)."""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from proxy.invalidation import PROMPTS, publish

from .models import Label, Prompt


@receiver([post_save, post_delete], sender=Label, dispatch_uid="proxy-label-moved")
@receiver([post_save, post_delete], sender=Prompt, dispatch_uid="proxy-prompt-changed")
def prompt_changed(sender, instance, **kwargs) -> None:
    # Label moves are rare: every process drops its resolved prompts and reads them again.
    transaction.on_commit(partial(publish, PROMPTS, ""))
