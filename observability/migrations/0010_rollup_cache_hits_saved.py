"""Rollups count response cache hits and the cost they saved, so the overview shows them without scanning records.
Existing rollup rows get their hits from the records already stored (only hits are read: few rows, one pass per
dimension); `manage.py rebuild_rollups` recomputes everything exactly."""

from decimal import Decimal

from django.db import migrations, models
from django.db.models import Count, Sum, Value
from django.db.models.functions import Coalesce, NullIf, TruncHour

# A rollup's dimension and the record field it is keyed by (as observability/rollups.py files them).
_FIELDS = {
    "all": None,
    "model": "filed_model",
    "provider": "provider",
    "app": "app_id",
    "key": "key_id",
    "user": "user_id",
    "prompt": "prompt_version_id",
}


def count_hits(apps, schema_editor):
    RequestRecord = apps.get_model("observability", "RequestRecord")
    RecordRollup = apps.get_model("observability", "RecordRollup")
    hits = RequestRecord.objects.filter(cache_hit=True).annotate(
        hour=TruncHour("created_at"), filed_model=Coalesce(NullIf("response_model", Value("")), "model")
    )
    for dimension, name in _FIELDS.items():
        keys = ["org_id", "hour"] + ([name] if name else [])
        for row in hits.values(*keys).annotate(n=Count("id"), saved=Sum("cost_saved")):
            value = str(row[name] or "")[:200] if name else ""
            if name and not value:
                continue
            RecordRollup.objects.filter(
                org_id=row["org_id"], dimension=dimension, bucket=row["hour"], value=value
            ).update(cache_hits=row["n"], cost_saved=row["saved"] or Decimal(0))


class Migration(migrations.Migration):
    dependencies = [
        ("observability", "0009_cache_hits_saved_cost"),
    ]

    operations = [
        migrations.AddField(
            model_name="recordrollup",
            name="cache_hits",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="recordrollup",
            name="cost_saved",
            field=models.DecimalField(decimal_places=10, default=Decimal("0"), max_digits=20),
        ),
        migrations.RunPython(count_hits, migrations.RunPython.noop),
    ]
