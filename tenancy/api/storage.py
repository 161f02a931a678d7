"""The API of an org's bucket: its settings (access keys write-only: only their hints come back) and the list
of its export runs (read-only). Admins and owners only (tenancy.permissions)."""

from __future__ import annotations

from rest_framework import exceptions, mixins, serializers

from .. import storage
from ..models import Organization, StorageExport, StorageExportRun
from ..permissions import VIEW, allowed_anywhere
from .serializers import ScopedPrimaryKeyField, checked_draft
from .views import CrudViewSet, ScopedViewSet

_KEY_HELP = 'Write-only: only its hint is ever returned. Leave it out to keep the stored one; "" clears it.'


class AdminsOnly:
    """The bucket and its runs are for the org's admins and owners: anyone else is told so (403), as for the
    audit log, rather than shown an empty list."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not allowed_anywhere(self.principal, self.model, VIEW):
            raise exceptions.PermissionDenied("Only organization admins and owners manage the org's bucket.")


class StorageExportSerializer(serializers.ModelSerializer):
    """An org's bucket, checked as the service will (bucket name, prefix, endpoint)."""

    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    access_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=256, help_text="The access key id. " + _KEY_HELP
    )
    secret_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=256,
        style={"input_type": "password"},
        help_text="The secret access key. " + _KEY_HELP,
    )

    class Meta:
        model = StorageExport
        fields = [
            "id",
            "org",
            "enabled",
            "endpoint_url",
            "region",
            "bucket",
            "prefix",
            "access_key",
            "access_key_hint",
            "secret_key",
            "secret_key_hint",
            "formats",
            "include_bodies",
            "bodies_only_in_bucket",
            "every_hours",
            "exported_until",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["access_key_hint", "secret_key_hint", "exported_until", "created_at", "updated_at"]
        validators = []  # one bucket per org: checked by the service, as a field error on `org`

    def validate(self, data):
        obj = checked_draft(self, StorageExport, data, storage.FIELDS, storage.check)
        if "prefix" in data:
            data["prefix"] = obj.prefix
        return data


class StorageExportUpdateSerializer(StorageExportSerializer):
    class Meta(StorageExportSerializer.Meta):
        read_only_fields = [*StorageExportSerializer.Meta.read_only_fields, "org"]


class StorageExportRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = StorageExportRun
        fields = [
            "id",
            "org",
            "started_at",
            "finished_at",
            "status",
            "trigger",
            "window_start",
            "window_end",
            "records",
            "bodies",
            "written",
            "error",
        ]
        read_only_fields = fields


class StorageExportViewSet(AdminsOnly, CrudViewSet):
    """The org's own S3-compatible bucket, where its records go hour by hour as Parquet (one per org)."""

    model = StorageExport
    queryset = StorageExport.objects.select_related("org")
    serializer_class = StorageExportSerializer
    filterset_fields = ["org", "enabled"]
    updatable = (*storage.FIELDS, "access_key", "secret_key")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return StorageExportUpdateSerializer
        return StorageExportSerializer

    def create_object(self, data):
        self.require_add(data["org"])
        fields = {k: v for k, v in data.items() if k in storage.FIELDS}
        return storage.storage_export_create(
            actor=self.actor,
            org=data["org"],
            access_key=data.get("access_key", ""),
            secret_key=data.get("secret_key", ""),
            **fields,
        )

    def update_object(self, export, fields):
        access_key, secret_key = fields.pop("access_key", None), fields.pop("secret_key", None)
        return storage.storage_export_update(
            actor=self.actor, export=export, access_key=access_key, secret_key=secret_key, **fields
        )

    def delete_object(self, export):
        storage.storage_export_delete(actor=self.actor, export=export)


class StorageExportRunViewSet(AdminsOnly, ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Runs of the bucket export, newest first: what each wrote, or why it failed (read-only)."""

    model = StorageExportRun
    queryset = StorageExportRun.objects.all()
    serializer_class = StorageExportRunSerializer
    filterset_fields = ["org", "status"]
