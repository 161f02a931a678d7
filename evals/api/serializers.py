from rest_framework import serializers

from tenancy.api.serializers import ScopedPrimaryKeyField, WorkOrgField
from tenancy.models import Organization

from ..models import Dataset, DatasetItem, DatasetVersion, EvalResult, EvalRun, EvalTarget


class DatasetVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetVersion
        fields = ["id", "number", "message", "item_count", "author_name", "created_at"]
        read_only_fields = fields


class DatasetSerializer(serializers.ModelSerializer):
    org = WorkOrgField(queryset=Organization.objects.all())
    latest = DatasetVersionSerializer(read_only=True)
    items = serializers.ListField(
        child=serializers.JSONField(),
        write_only=True,
        required=False,
        help_text="Items for version 1 (see `items` for their shape).",
    )

    class Meta:
        model = Dataset
        fields = ["id", "org", "name", "description", "latest", "items", "created_at", "archived_at"]
        read_only_fields = ["created_at", "archived_at"]
        validators = []  # uniqueness is checked by the database and comes back as a field error


class ItemSerializer(serializers.ModelSerializer):
    key = serializers.CharField(source="key.hex", read_only=True)

    class Meta:
        model = DatasetItem
        fields = ["key", "position", "messages", "variables", "expected", "metadata", "tags", "source_record"]
        read_only_fields = fields


class AddItemsSerializer(serializers.Serializer):
    items = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        help_text='Each: {"input": "text" | [messages] | {variables}, "messages": [...], "variables": {...}, '
        '"expected": "...", "metadata": {...}, "tags": [...]}',
    )
    message = serializers.CharField(required=False, allow_blank=True, max_length=500)


class RemoveItemsSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.UUIDField(), allow_empty=False)
    message = serializers.CharField(required=False, allow_blank=True, max_length=500)


class ImportSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="JSONL (.jsonl) or CSV (.csv); bad rows are reported by line, nothing is half-imported."
    )
    mode = serializers.ChoiceField(choices=["append", "replace"], default="append")
    message = serializers.CharField(required=False, allow_blank=True, max_length=500)


class FromRecordsSerializer(serializers.Serializer):
    records = serializers.ListField(child=serializers.UUIDField(), allow_empty=False, max_length=500)


class TargetSerializer(serializers.ModelSerializer):
    prompt_version_ref = serializers.CharField(
        source="prompt_version",
        read_only=True,
        allow_null=True,
        help_text="The prompt version as namespace/name@number.",
    )

    class Meta:
        model = EvalTarget
        fields = [
            "position",
            "label",
            "prompt_version",
            "prompt_version_ref",
            "messages",
            "provider",
            "model",
            "parameters",
            "summary",
        ]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    org = WorkOrgField(queryset=Organization.objects.all())
    dataset_version = ScopedPrimaryKeyField(queryset=DatasetVersion.objects.all())  # another org's reads as missing
    targets = serializers.ListField(
        child=serializers.JSONField(),
        write_only=True,
        help_text='Each: {"prompt_version": "support/greeter@3"?, "messages": [...]?, "provider": "openai", '
        '"model": "gpt-4o-mini", "parameters": {...}, "label": "..."}. `prompt_version` is written '
        "namespace/name@version (or @label: the version it points at when the run is created; or name@3 "
        "when one prompt has that name), or the version's id as a number.",
    )
    target_list = TargetSerializer(source="targets", many=True, read_only=True)

    class Meta:
        model = EvalRun
        fields = [
            "id",
            "org",
            "name",
            "dataset_version",
            "evaluators",
            "concurrency",
            "targets",
            "target_list",
            "status",
            "total",
            "done",
            "failed",
            "attempts",
            "error",
            "created_by_name",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [
            "status",
            "total",
            "done",
            "failed",
            "attempts",
            "error",
            "created_by_name",
            "created_at",
            "started_at",
            "finished_at",
        ]
        extra_kwargs = {"concurrency": {"required": False}}


class ResultSerializer(serializers.ModelSerializer):
    target = serializers.IntegerField(source="target.position")
    item = serializers.CharField(source="item.key.hex")
    position = serializers.IntegerField(source="item.position")

    class Meta:
        model = EvalResult
        fields = [
            "target",
            "item",
            "position",
            "output",
            "error",
            "scores",
            "passed",
            "input_tokens",
            "output_tokens",
            "cost",
            "judge_cost",
            "latency_ms",
            "request_id",
            "created_at",
        ]
        read_only_fields = fields
