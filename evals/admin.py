"""Admin for staff: datasets editable (name, description; audited); versions, items, runs and results
read-only (versions are immutable and runs move only through the services). Runs can be cancelled here."""

from django.contrib import admin, messages

from tenancy.admin import AuditedAdmin, ReadOnlyScopedAdmin, admin_actor

from . import services
from .models import Dataset, DatasetItem, DatasetVersion, EvalResult, EvalRun, EvalTarget


class _Frozen(ReadOnlyScopedAdmin):
    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(AuditedAdmin):
    list_display = ["name", "org", "archived_at", "created_at"]
    list_filter = ["org"]
    search_fields = ["name", "description"]
    fixed_after_create = ("org",)


@admin.register(DatasetVersion)
class DatasetVersionAdmin(_Frozen):
    list_display = ["dataset", "number", "item_count", "message", "author_name", "created_at"]
    search_fields = ["dataset__name", "message"]
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]


@admin.register(DatasetItem)
class DatasetItemAdmin(_Frozen):
    list_display = ["version", "position", "key", "expected"]
    search_fields = ["version__dataset__name", "expected"]
    readonly_fields = [f.name for f in DatasetItem._meta.fields]


class TargetInline(admin.TabularInline):
    model = EvalTarget
    extra = 0
    can_delete = False
    readonly_fields = ["position", "label", "prompt_version", "provider", "model", "parameters", "summary"]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(EvalRun)
class EvalRunAdmin(_Frozen):
    list_display = ["__str__", "org", "dataset_version", "status", "done", "total", "failed", "attempts", "created_at"]
    list_filter = ["status", "org"]
    search_fields = ["name", "created_by_name"]
    readonly_fields = [f.name for f in EvalRun._meta.fields]
    inlines = [TargetInline]
    actions = ["cancel"]

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        actor = admin_actor(request)
        for run in queryset:
            services.run_cancel(actor=actor, run=run)
        messages.success(request, f"Asked {queryset.count()} run(s) to stop.")


@admin.register(EvalResult)
class EvalResultAdmin(_Frozen):
    list_display = ["run", "target", "item", "passed", "cost", "latency_ms", "created_at"]
    list_filter = ["passed"]
    readonly_fields = [f.name for f in EvalResult._meta.fields]
