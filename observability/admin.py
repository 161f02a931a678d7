"""Admin for staff: request records read-only, per-org observability settings and price overrides audited."""

from django.contrib import admin

from tenancy.admin import AuditedAdmin, ReadOnlyScopedAdmin

from .models import ObservabilitySettings, PriceOverride, RequestRecord


@admin.register(RequestRecord)
class RequestRecordAdmin(ReadOnlyScopedAdmin):
    list_display = ["created_at", "org", "provider", "model", "status", "outcome", "total_tokens", "cost_total",
                    "total_ms", "session_id", "client"]
    list_filter = ["provider", "outcome", "stream", "usage_source", "org"]
    search_fields = ["id", "model", "session_id", "user_id"]
    date_hierarchy = "created_at"
    list_select_related = ["org"]
    show_full_result_count = False  # a COUNT(*) over millions of rows on every page is not worth it
    readonly_fields = [f.name for f in RequestRecord._meta.fields]


@admin.register(ObservabilitySettings)
class ObservabilitySettingsAdmin(AuditedAdmin):
    list_display = ["org", "body_mode", "body_max_bytes", "retention_days"]
    list_filter = ["body_mode"]
    search_fields = ["org__slug", "org__name"]
    fixed_after_create = ("org",)


@admin.register(PriceOverride)
class PriceOverrideAdmin(AuditedAdmin):
    list_display = ["org", "model", "input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"]
    list_filter = ["org"]
    search_fields = ["model", "org__slug"]
    fixed_after_create = ("org",)
