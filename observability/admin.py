"""Admin for staff: request records read-only, dead records with a replay, per-org observability settings and
price overrides audited."""

from django.contrib import admin, messages

from tenancy.admin import AuditedAdmin, ReadOnlyScopedAdmin, admin_actor

from . import services
from .models import DeadRecord, ObservabilitySettings, PriceOverride, RequestRecord, Score


@admin.register(RequestRecord)
class RequestRecordAdmin(ReadOnlyScopedAdmin):
    list_display = [
        "created_at",
        "org",
        "provider",
        "model",
        "status",
        "outcome",
        "total_tokens",
        "cost_total",
        "total_ms",
        "session_id",
        "client",
    ]
    list_filter = ["provider", "outcome", "stream", "usage_source", "org"]
    # flags: what the writer had to change to store a record, and why it is unpriced
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
    list_display = [
        "org",
        "model",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "cache_write_1h_per_mtok",
    ]
    list_filter = ["org"]
    search_fields = ["model", "org__slug"]
    fixed_after_create = ("org",)


@admin.register(DeadRecord)
class DeadRecordAdmin(ReadOnlyScopedAdmin):
    """Records the writer could not store: the rest of their batch was. Fix the cause, then replay them."""

    list_display = ["last_seen", "record_id", "org_id", "stage", "short_error", "attempts", "first_seen"]
    list_filter = ["stage"]
    search_fields = ["record_id", "error"]
    readonly_fields = [f.name for f in DeadRecord._meta.fields]
    actions = ["replay"]

    @admin.display(description="error")
    def short_error(self, dead: DeadRecord) -> str:
        return dead.error[:120]

    @admin.action(description="Replay the selected dead records")
    def replay(self, request, queryset):
        actor = admin_actor(request)
        stored = failed = 0
        for dead in queryset:
            if services.dead_record_replay(actor=actor, dead=dead):
                stored += 1
            else:
                failed += 1
        if stored:
            self.message_user(
                request, f"{stored} record(s) stored and removed from the dead letters.", messages.SUCCESS
            )
        if failed:
            self.message_user(
                request, f"{failed} record(s) still could not be stored: see their error.", messages.WARNING
            )


@admin.register(Score)
class ScoreAdmin(ReadOnlyScopedAdmin):
    """Scores are added by applications and people (the API, the review queue); staff read them here."""

    list_display = ["created_at", "org", "name", "shown", "source", "author_name", "record_id"]
    list_filter = ["source", "name", "org"]
    search_fields = ["name", "label", "comment", "author_name"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Score._meta.fields]
