"""Rows that are never changed once written (prompt versions, dataset versions and items): an update through
a queryset or a second save() raises, so only a new row can change what they say."""

from __future__ import annotations

from django.db import models


def _refusal(model: type[models.Model]) -> TypeError:
    name = str(model._meta.verbose_name_plural)
    return TypeError(f"{name[:1].upper()}{name[1:]} are immutable: {model.immutable_hint}")


class ImmutableQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise _refusal(self.model)


class Immutable(models.Model):
    """Abstract base: subclasses say what to do instead in `immutable_hint`."""

    immutable_hint = "create a new one instead."

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise _refusal(type(self))
        super().save(*args, **kwargs)
