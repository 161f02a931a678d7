from rest_framework import serializers

from tenancy.api.serializers import WorkOrgField
from tenancy.models import Organization

from ..models import Label, LabelMove, Namespace, Prompt, PromptVersion


class LabelSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")

    class Meta:
        model = Label
        fields = ["name", "version", "updated_at"]


class PromptSerializer(serializers.ModelSerializer):
    org = WorkOrgField(queryset=Organization.objects.all())
    namespace = serializers.CharField(source="namespace.path", max_length=200)
    labels = LabelSerializer(many=True, read_only=True)
    ref = serializers.CharField(read_only=True)

    class Meta:
        model = Prompt
        fields = ["id", "org", "namespace", "name", "ref", "description", "tags", "labels", "archived_at", "created_at"]
        read_only_fields = ["archived_at", "created_at"]
        validators = []  # uniqueness is checked by the database and comes back as a field error


class VersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PromptVersion
        fields = [
            "number",
            "messages",
            "template",
            "variables",
            "model",
            "parameters",
            "commit_message",
            "author_name",
            "created_at",
        ]
        read_only_fields = ["number", "author_name", "created_at"]


class LabelMoveSerializer(serializers.ModelSerializer):
    from_version = serializers.IntegerField(source="from_version.number", allow_null=True, default=None)
    to_version = serializers.IntegerField(source="to_version.number")

    class Meta:
        model = LabelMove
        fields = ["label", "action", "from_version", "to_version", "actor", "created_at"]


class SetLabelSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=50)
    version = serializers.IntegerField(min_value=1)


class PromoteSerializer(serializers.Serializer):
    source = serializers.SlugField(max_length=50)
    target = serializers.SlugField(max_length=50)


class RollbackSerializer(serializers.Serializer):
    label = serializers.SlugField(max_length=50)


class RenderSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, required=False)
    label = serializers.SlugField(max_length=50, required=False)
    variables = serializers.DictField(required=False, default=dict)
    user = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="A user message to put after the prompt (Anthropic needs one after a system prompt).",
    )
    provider = serializers.ChoiceField(choices=["openai", "anthropic"], default="openai")

    def validate(self, data):
        if ("version" in data) == ("label" in data):
            raise serializers.ValidationError("Give either a version number or a label.")
        return data


class NamespaceSerializer(serializers.ModelSerializer):
    org = WorkOrgField(queryset=Organization.objects.all())

    class Meta:
        model = Namespace
        fields = ["id", "org", "path", "description", "created_at"]
        read_only_fields = ["created_at"]
        validators = []  # (org, path) uniqueness comes back from the database as a field error
