"""Admin for staff: prompts and namespaces editable (audited); versions, labels and their history read-only
(versions are immutable, and labels move only through the services, which keep the history)."""

from django.contrib import admin

from tenancy.admin import AuditedAdmin, ReadOnlyScopedAdmin

from .models import Label, LabelMove, Namespace, Prompt, PromptVersion


@admin.register(Namespace)
class NamespaceAdmin(AuditedAdmin):
    list_display = ["path", "org", "created_at"]
    list_filter = ["org"]
    search_fields = ["path"]
    fixed_after_create = ("org",)


@admin.register(Prompt)
class PromptAdmin(AuditedAdmin):
    list_display = ["name", "namespace", "org", "archived_at", "created_at"]
    list_filter = ["org"]
    search_fields = ["name", "namespace__path", "description"]
    fixed_after_create = ("org", "namespace", "name")


@admin.register(PromptVersion)
class PromptVersionAdmin(ReadOnlyScopedAdmin):
    list_display = ["prompt", "number", "model", "commit_message", "author_name", "created_at"]
    search_fields = ["prompt__name", "commit_message"]
    readonly_fields = [f.name for f in PromptVersion._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Label)
class LabelAdmin(ReadOnlyScopedAdmin):
    list_display = ["prompt", "name", "version", "updated_at"]
    list_filter = ["name"]
    search_fields = ["prompt__name"]
    readonly_fields = [f.name for f in Label._meta.fields]


@admin.register(LabelMove)
class LabelMoveAdmin(ReadOnlyScopedAdmin):
    list_display = ["created_at", "prompt", "label", "action", "from_version", "to_version", "actor"]
    list_filter = ["action", "label"]
    search_fields = ["prompt__name", "actor"]
    readonly_fields = [f.name for f in LabelMove._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False
