"""Rollups count priced requests (and sessions their failed and unpriced ones), so a breakdown row can tell a
free model's $0 from "unpriced" and from "no cost at all". Existing rows get an estimate from what they hold;
`manage.py rebuild_rollups` recomputes them exactly from the raw records."""

from django.db import migrations, models
from django.db.models import Case, F, Value, When


def estimate(apps, schema_editor):
    RecordRollup = apps.get_model("observability", "RecordRollup")
    SessionRollup = apps.get_model("observability", "SessionRollup")
    known = F("requests") - F("errors") - F("unpriced")
    RecordRollup.objects.filter(cost__gt=0).update(priced=Case(
        When(requests__gt=F("errors") + F("unpriced"), then=known), default=Value(1),
    ))
    SessionRollup.objects.filter(cost__gt=0).update(priced=F("requests"))


class Migration(migrations.Migration):

    dependencies = [
        ("observability", "0005_billing_tiers_cache_ttl_and_tool_fees"),
    ]

    operations = [
        migrations.AddField(
            model_name="recordrollup",
            name="priced",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="sessionrollup",
            name="errors",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="sessionrollup",
            name="unpriced",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="sessionrollup",
            name="priced",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(estimate, migrations.RunPython.noop),
    ]
