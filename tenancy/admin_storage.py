"""Admin for an org's bucket (imported by tenancy/admin.py): access keys write-only, saved through the services
(encrypted, audited); its export runs read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from . import storage
from .admin import AuditedAdmin, ReadOnlyScopedAdmin, admin_actor
from .models import StorageExport, StorageExportRun


def _secret_field(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: leave blank to keep the stored one.",
    )


class StorageExportForm(forms.ModelForm):
    access_key = _secret_field("Access key id")
    secret_key = _secret_field("Secret access key")
    endpoint_url = forms.URLField(
        required=False, assume_scheme="https", help_text=StorageExport._meta.get_field("endpoint_url").help_text
    )

    class Meta:
        model = StorageExport
        fields = [
            "org",
            "enabled",
            "endpoint_url",
            "region",
            "bucket",
            "prefix",
            "access_key",
            "secret_key",
            "formats",
            "include_bodies",
            "bodies_only_in_bucket",
            "every_hours",
        ]

    def clean(self):
        data = super().clean()
        obj = self.instance
        for name in storage.FIELDS:
            if name in data:
                setattr(obj, name, data[name])
        if data.get("org") is not None:
            obj.org = data["org"]
        if obj.org_id is not None:
            try:
                storage.check(obj)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    for error in errors:
                        self.add_error(field if field in self.fields else None, error)
        return data


@admin.register(StorageExport)
class StorageExportAdmin(AuditedAdmin):
    form = StorageExportForm
    fixed_after_create = ("org",)
    list_display = ["org", "bucket", "prefix", "endpoint_url", "enabled", "bodies_only_in_bucket", "exported_until"]
    list_filter = ["enabled", "bodies_only_in_bucket", "formats"]
    search_fields = ["org__name", "org__slug", "bucket"]
    list_select_related = ["org"]
    readonly_fields = ["access_key_hint", "secret_key_hint", "exported_until", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        data = dict(form.cleaned_data)
        keys = {"access_key": data.pop("access_key") or None, "secret_key": data.pop("secret_key") or None}
        fields = {k: v for k, v in data.items() if k in storage.FIELDS}
        if change:
            saved = storage.storage_export_update(
                actor=actor, export=StorageExport.objects.get(pk=obj.pk), **keys, **fields
            )
        else:
            saved = storage.storage_export_create(
                actor=actor, org=data["org"], **{k: v or "" for k, v in keys.items()}, **fields
            )
        obj.pk = saved.pk
        obj._state.adding = False

    def delete_model(self, request, obj):
        storage.storage_export_delete(actor=admin_actor(request), export=obj)


@admin.register(StorageExportRun)
class StorageExportRunAdmin(ReadOnlyScopedAdmin):
    list_display = ["started_at", "org", "status", "trigger", "window_start", "window_end", "records", "bodies"]
    list_filter = ["status", "trigger", "org"]
    readonly_fields = [f.name for f in StorageExportRun._meta.fields]
