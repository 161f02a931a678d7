from rest_framework import serializers

from tenancy.api.serializers import ScopedPrimaryKeyField
from tenancy.models import Organization

from ..models import ObservabilitySettings, PriceOverride, RequestRecord


class RequestRecordSerializer(serializers.ModelSerializer):
    app = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    key = serializers.SlugRelatedField(slug_field="prefix", read_only=True)
    priced = serializers.BooleanField(read_only=True, help_text="The cost is known (cost_total is not null).")
    failed = serializers.BooleanField(
        read_only=True, help_text="Refused, cut, timed out, or answered with an error status."
    )
    unpriced = serializers.BooleanField(
        read_only=True,
        help_text="Did not fail, is billed by the token, and its cost is unknown (not in totals).",
    )

    class Meta:
        model = RequestRecord
        exclude = ["team"]
        read_only_fields = [f.name for f in RequestRecord._meta.fields]


class SeriesPointSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    group = serializers.CharField(allow_null=True)
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=18, decimal_places=10)
    cache_hits = serializers.IntegerField(help_text="Requests answered from the response cache")
    cost_saved = serializers.DecimalField(
        max_digits=18, decimal_places=10, help_text="What the cache hits' original answers cost"
    )
    avg_ms = serializers.FloatField(allow_null=True, required=False)
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)


class SessionSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    user = serializers.CharField(allow_blank=True)
    client = serializers.CharField(allow_blank=True)
    requests = serializers.IntegerField()
    started = serializers.DateTimeField()
    ended = serializers.DateTimeField()
    tokens = serializers.IntegerField(allow_null=True)
    cost = serializers.DecimalField(max_digits=18, decimal_places=10, allow_null=True)


class ObservabilitySettingsSerializer(serializers.ModelSerializer):
    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())

    class Meta:
        model = ObservabilitySettings
        fields = ["org", "body_mode", "body_max_bytes", "retention_days"]
        extra_kwargs = {
            "body_max_bytes": {"min_value": 0, "max_value": 16 * 1024 * 1024},
            "retention_days": {"min_value": 1, "max_value": 3650},
        }
        validators = []  # one row per org: the service updates an existing one


class PriceOverrideSerializer(serializers.ModelSerializer):
    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())

    class Meta:
        model = PriceOverride
        fields = [
            "id",
            "org",
            "model",
            "input_per_mtok",
            "output_per_mtok",
            "cache_read_per_mtok",
            "cache_write_per_mtok",
            "cache_write_1h_per_mtok",
        ]
        extra_kwargs = {name: {"min_value": 0} for name in fields[3:]}
        validators = []  # uniqueness of (org, model) comes back from the database as a field error
