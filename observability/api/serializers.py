from rest_framework import serializers

from ..models import RequestRecord


class RequestRecordSerializer(serializers.ModelSerializer):
    app = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    key = serializers.SlugRelatedField(slug_field="prefix", read_only=True)
    priced = serializers.BooleanField(read_only=True, help_text="False: the model has no known price (cost is null).")

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
