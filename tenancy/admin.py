"""Django admin for staff: every change is audited, keys are shown once, provider secrets are write-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils import timezone

from . import cache, routes, services
from .audit import Actor, audit_record
from .models import (
    MAX_TARGETS,
    APIKey,
    App,
    AuditLog,
    Budget,
    BudgetEvent,
    CacheSettings,
    GuardrailPolicy,
    Membership,
    Organization,
    ProviderCredential,
    RateLimit,
    Route,
    RouteTarget,
    Scope,
    Team,
    TeamMembership,
    WebhookDelivery,
    WebhookEndpoint,
    clean_statuses,
)
from .permissions import VIEW, Principal, restrict
from .webhooks import services as webhooks
from .webhooks.events import CATALOGUE

User = get_user_model()

admin.site.site_header = "Ingate administration"
admin.site.site_title = "Ingate admin"
admin.site.index_title = "Organizations, keys and credentials"


def admin_actor(request) -> Actor:
    return Actor.from_request(request, via="admin")


class AuditedWritesMixin:
    """Admin saves and deletes go through the audited services."""

    def save_model(self, request, obj, form, change):
        services.audited_save(actor=admin_actor(request), obj=obj, change=change)

    def delete_model(self, request, obj):
        services.audited_delete(actor=admin_actor(request), obj=obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


class AuditedAdmin(AuditedWritesMixin, admin.ModelAdmin):
    """Lists go through the scoping function; saves and deletes write the audit log."""

    # Fields fixed once an object exists: moving a team, app or credential to another org would leave
    # its keys, apps or members behind in the old tenant.
    fixed_after_create: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly + list(self.fixed_after_create) if obj is not None else readonly

    def get_queryset(self, request):
        return restrict(super().get_queryset(request), Principal.for_user(request.user), VIEW)


def _purge_caches(modeladmin, request, orgs) -> None:
    actor = admin_actor(request)
    dropped = sum(cache.cache_purge(actor=actor, org=org) for org in orgs)
    names = ", ".join(org.slug for org in orgs)
    modeladmin.message_user(request, f"Dropped {dropped} cached answer(s) of {names}.", messages.SUCCESS)


@admin.register(Organization)
class OrganizationAdmin(AuditedAdmin):
    actions = ["purge_cache"]
    list_display = ["name", "slug", "is_active", "timezone", "member_count", "app_count", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    @admin.display(description="members")
    def member_count(self, org):
        return org.memberships.count()

    @admin.display(description="apps")
    def app_count(self, org):
        return org.apps.count()

    @admin.action(description="Purge this org's cache")
    def purge_cache(self, request, queryset):
        _purge_caches(self, request, list(queryset))


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    fixed_after_create = ("org",)
    list_display = ["name", "slug", "org", "created_at"]
    list_filter = ["org"]
    search_fields = ["name", "slug", "org__name"]
    list_select_related = ["org"]
    prepopulated_fields = {"slug": ["name"]}


class AppForm(forms.ModelForm):
    class Meta:
        model = App
        fields = ["org", "team", "name", "slug", "description"]

    def clean(self):
        data = super().clean()
        org = data.get("org") or (self.instance.org if self.instance.pk else None)
        if data.get("team") and org and data["team"].org_id != org.pk:
            raise ValidationError({"team": "The team belongs to another organization."})
        return data


@admin.register(App)
class AppAdmin(AuditedAdmin):
    form = AppForm
    fixed_after_create = ("org",)
    list_display = ["name", "slug", "org", "team", "created_at"]
    list_filter = ["org"]
    search_fields = ["name", "slug", "org__name"]
    list_select_related = ["org", "team"]
    prepopulated_fields = {"slug": ["name"]}


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["org", "user", "role"]

    def clean(self):
        data = super().clean()
        if self.instance.pk and self.instance.role == "owner" and data.get("role") != "owner":
            others = Membership.objects.filter(org=self.instance.org, role="owner").exclude(pk=self.instance.pk)
            if not others.exists():
                raise ValidationError(
                    {"role": "An organization needs at least one owner; make someone else owner first."}
                )
        return data


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    form = MembershipForm
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role", "org"]
    search_fields = ["user__username", "user__email", "org__name"]
    list_select_related = ["user", "org"]
    autocomplete_fields = ["user"]
    fixed_after_create = ("org", "user")

    def save_model(self, request, obj, form, change):
        # Through the membership services, so a demotion audits the keys it narrows like one made in the API.
        actor = admin_actor(request)
        if change:
            saved = services.membership_update(actor=actor, membership=obj, role=form.cleaned_data["role"])
        else:
            saved = services.membership_create(actor=actor, org=obj.org, user=obj.user, role=obj.role)
        obj.pk = saved.pk
        obj._state.adding = False

    def has_delete_permission(self, request, obj=None):
        # The last owner cannot be removed; admin then offers no delete instead of failing on save.
        if obj is not None and obj.role == "owner":
            if not Membership.objects.filter(org_id=obj.org_id, role="owner").exclude(pk=obj.pk).exists():
                return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        services.membership_delete(actor=admin_actor(request), membership=obj)

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            try:
                self.delete_model(request, membership)
            except ValidationError as exc:
                self.message_user(request, f"{membership}: {' '.join(exc.messages)}", messages.ERROR)


class TeamMembershipForm(forms.ModelForm):
    class Meta:
        model = TeamMembership
        fields = ["team", "user"]

    def clean(self):
        data = super().clean()
        team, user = data.get("team"), data.get("user")
        if team and user and not Membership.objects.filter(org_id=team.org_id, user=user).exists():
            raise ValidationError(
                {"user": f"{user} is not a member of {team.org.name}; add them to the organization first."}
            )
        return data


@admin.register(TeamMembership)
class TeamMembershipAdmin(AuditedAdmin):
    form = TeamMembershipForm
    list_display = ["user", "team", "created_at"]
    list_filter = ["team__org"]
    search_fields = ["user__username", "team__name"]
    list_select_related = ["user", "team__org"]
    autocomplete_fields = ["user"]


class APIKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.PROXY]
    )

    class Meta:
        model = APIKey
        fields = ["app", "name", "scopes", "expires_at"]

    actor: Actor | None = None  # set by APIKeyAdmin.get_form

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now() and not self.instance.pk:
            raise ValidationError("The expiry must be in the future.")
        return value

    def clean(self):
        data = super().clean()
        app = data.get("app") or (self.instance.app if self.instance.pk else None)
        if self.actor is not None and app is not None and data.get("scopes"):
            # The service checks this too; here it becomes a form error instead of a failed save.
            services.api_key_check_scopes(
                actor=self.actor, org=app.org, scopes=data["scopes"], key=self.instance if self.instance.pk else None
            )
        return data


@admin.register(APIKey)
class APIKeyAdmin(AuditedAdmin):
    form = APIKeyForm
    list_display = ["name", "display", "org", "app", "scope_list", "status", "expires_at", "last_used_at", "created_at"]
    list_filter = ["org", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "app__name", "org__name"]
    list_select_related = ["org", "app"]
    readonly_fields = ["display", "org", "status", "created_by", "created_at", "revoked_at", "last_used_at"]
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request, obj=None):
        # The app of an existing key is fixed: moving a key would silently move its usage to another tenant.
        return [*self.readonly_fields, "app"] if obj is not None else self.readonly_fields

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.actor = admin_actor(request)
        return form

    @admin.display(description="scopes")
    def scope_list(self, key):
        return ", ".join(key.scopes)

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        data = form.cleaned_data
        if change:
            services.api_key_update(
                actor=actor,
                key=APIKey.objects.get(pk=obj.pk),
                name=data["name"],
                scopes=data["scopes"],
                expires_at=data["expires_at"],
            )
            return
        key, plaintext = services.api_key_create(
            actor=actor, app=data["app"], name=data["name"], scopes=data["scopes"], expires_at=data["expires_at"]
        )
        obj.pk, obj.org_id, obj.prefix = key.pk, key.org_id, key.prefix
        obj._state.adding = False
        obj._plaintext = plaintext

    def response_add(self, request, obj, post_url_continue=None):
        # The key is rendered into this one response, never stored in the session or a message cookie.
        return TemplateResponse(
            request,
            "admin/tenancy/apikey/created.html",
            {**self.admin_site.each_context(request), "key": obj, "plaintext": obj._plaintext, "opts": self.opts},
        )

    def delete_model(self, request, obj):
        services.api_key_delete(actor=admin_actor(request), key=obj)

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        actor = admin_actor(request)
        for key in queryset:
            services.api_key_revoke(actor=actor, key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


class ProviderCredentialForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The provider API key. Write-only: leave blank to keep the stored one.",
    )
    base_url = forms.URLField(
        required=False, assume_scheme="https", help_text="Overrides the provider's default upstream URL."
    )

    class Meta:
        model = ProviderCredential
        fields = ["org", "provider", "name", "base_url", "api_version", "auth_style", "secret"]

    def clean(self):
        data = super().clean()
        needs_secret = services.credential_needs_secret(
            provider=data.get("provider"), auth_style=data.get("auth_style")
        )
        if not self.instance.has_secret and not data.get("secret") and needs_secret:
            raise ValidationError({"secret": "This provider needs an API key."})
        return data


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(AuditedAdmin):
    form = ProviderCredentialForm
    fixed_after_create = ("org", "provider", "name")
    list_display = ["name", "provider", "org", "secret_hint", "base_url", "updated_at"]
    list_filter = ["provider", "org"]
    search_fields = ["name", "org__name", "base_url"]
    list_select_related = ["org"]
    readonly_fields = ["secret_hint", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        data = dict(form.cleaned_data)
        secret = data.pop("secret") or None
        if change:
            credential = ProviderCredential.objects.get(pk=obj.pk)
            for fixed in self.fixed_after_create:
                data.pop(fixed, None)
            services.provider_credential_update(actor=actor, credential=credential, secret=secret, **data)
        else:
            credential = services.provider_credential_create(actor=actor, secret=secret or "", **data)
        obj.pk = credential.pk
        obj._state.adding = False

    def delete_model(self, request, obj):
        services.provider_credential_delete(actor=admin_actor(request), credential=obj)


class RouteTargetFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        kept = [f for f in self.forms if (f.has_changed() or f.instance.pk) and not self._should_delete_form(f)]
        if not any(self.errors) and not kept:
            raise ValidationError("A route needs at least one target.")


class RouteTargetInline(admin.TabularInline):
    """A route's targets, in order (position); each is checked against the route's org (RouteTarget.clean)."""

    model = RouteTarget
    formset = RouteTargetFormSet
    fields = ["position", "provider", "model", "credential", "weight", "params"]
    extra = 1
    max_num = MAX_TARGETS

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "credential":
            kwargs["queryset"] = restrict(
                ProviderCredential.objects.select_related("org"), Principal.for_user(request.user), VIEW
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class RouteForm(forms.ModelForm):
    class Meta:
        model = Route
        fields = [
            "org",
            "name",
            "strategy",
            "enabled",
            "retry_on_statuses",
            "retries_per_target",
            "max_attempts",
            "deadline_seconds",
            "first_byte_timeout_seconds",
            "drop_unsupported",
        ]

    def clean(self):
        data = super().clean()
        # The org is read-only once the route exists, so Django's own unique check would skip the name.
        org = data.get("org") or (self.instance.org if self.instance.org_id else None)
        if org is not None and data.get("name"):
            routes.check_name(Route(pk=self.instance.pk, org=org, name=data["name"]))
        return data


@admin.register(Route)
class RouteAdmin(AuditedAdmin):
    """Routes (virtual models). Saving audits the route and its targets as one entry."""

    form = RouteForm
    inlines = [RouteTargetInline]
    fixed_after_create = ("org",)
    list_display = ["name", "org", "strategy", "target_list", "enabled", "updated_at"]
    list_filter = ["strategy", "enabled", "org"]
    search_fields = ["name", "org__name", "targets__model"]
    list_select_related = ["org"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("targets")

    @admin.display(description="targets")
    def target_list(self, route):
        return ", ".join(str(t) for t in route.targets.all())

    def save_model(self, request, obj, form, change):
        # The targets are saved after this (save_related): the audit entry is written there, with both.
        obj.updated_at = timezone.now()
        obj._before = None
        if change:
            saved = Route.objects.get(pk=obj.pk)
            obj._before = routes.route_audit_snapshot(saved)
        obj.save()

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        route = form.instance
        after = routes.route_audit_snapshot(route)
        actor = admin_actor(request)
        if route._before is None:
            audit_record(actor=actor, action="create", obj=route, changes={"after": after})
        elif changes := routes.route_changes(route._before, after):
            audit_record(actor=actor, action="update", obj=route, changes=changes)

    def delete_model(self, request, obj):
        routes.route_delete(actor=admin_actor(request), route=obj)


class ScopedLimitAdmin(AuditedAdmin):
    """Budgets and rate limits: the model's clean checks the scope (its team, app or key must be the org's)."""

    fixed_after_create = ("org",)
    list_select_related = ["org", "team", "app", "key"]
    search_fields = ["name", "user_id", "org__name", "team__slug", "app__slug", "key__prefix"]
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(description="applies to")
    def applies_to(self, obj):
        return obj.scope_label()

    def save_model(self, request, obj, form, change):
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(Budget)
class BudgetAdmin(ScopedLimitAdmin):
    fields = [
        "org",
        "name",
        "scope",
        "team",
        "app",
        "key",
        "user_id",
        "amount_usd",
        "period",
        "hard",
        "thresholds",
        "fail_open",
        "enabled",
        "created_at",
        "updated_at",
    ]
    list_display = ["__str__", "org", "applies_to", "amount_usd", "period", "hard", "fail_open", "enabled"]
    list_filter = ["period", "hard", "scope", "enabled", "fail_open", "org"]


@admin.register(RateLimit)
class RateLimitAdmin(ScopedLimitAdmin):
    fields = [
        "org",
        "name",
        "scope",
        "team",
        "app",
        "key",
        "user_id",
        "requests_per_minute",
        "tokens_per_minute",
        "concurrent",
        "count_cache_reads",
        "fail_open",
        "enabled",
        "created_at",
        "updated_at",
    ]
    list_display = [
        "__str__",
        "org",
        "applies_to",
        "requests_per_minute",
        "tokens_per_minute",
        "concurrent",
        "fail_open",
        "enabled",
    ]
    list_filter = ["scope", "enabled", "fail_open", "count_cache_reads", "org"]


@admin.register(CacheSettings)
class CacheSettingsAdmin(AuditedAdmin):
    """The response cache: the org's default (no app) and apps' own settings; the model's clean checks the app."""

    fixed_after_create = ("org", "app")
    list_select_related = ["org", "app"]
    fields = [
        "org",
        "app",
        "enabled",
        "ttl_seconds",
        "max_entry_bytes",
        "endpoints",
        "cache_positive_temperature",
        "namespace_per_app",
        "allow_files",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["created_at", "updated_at"]
    list_display = ["__str__", "org", "app", "enabled", "ttl_seconds", "max_entry_bytes", "cache_positive_temperature"]
    list_filter = ["enabled", "cache_positive_temperature", "org"]
    search_fields = ["org__name", "org__slug", "app__slug"]
    actions = ["purge_cache"]

    def save_model(self, request, obj, form, change):
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)

    @admin.action(description="Purge this org's cache")
    def purge_cache(self, request, queryset):
        _purge_caches(self, request, list(Organization.objects.filter(pk__in=queryset.values("org_id"))))


@admin.register(GuardrailPolicy)
class GuardrailPolicyAdmin(AuditedAdmin):
    """Guardrail policies: the org's default, an app's or a key's (the most specific applies). Saving compiles every
    check: a bad regex or schema is an error on `checks` naming the check and its field."""

    fixed_after_create = ("org", "app", "key")
    list_select_related = ["org", "app", "key"]
    fields = [
        "org",
        "app",
        "key",
        "name",
        "enabled",
        "checks",
        "message",
        "stream_mode",
        "restore",
        "redact_stored",
        "on_error",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["created_at", "updated_at"]
    list_display = ["__str__", "org", "app", "key", "enabled", "stream_mode", "restore", "redact_stored", "on_error"]
    list_filter = ["enabled", "stream_mode", "on_error", "org"]
    search_fields = ["name", "org__name", "org__slug", "app__slug"]

    def save_model(self, request, obj, form, change):
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)


class ReadOnlyScopedAdmin(admin.ModelAdmin):
    """Rows written by the system (audit entries, request records): listed through `restrict`, never edited."""

    def get_queryset(self, request):
        return restrict(super().get_queryset(request), Principal.for_user(request.user), VIEW)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyScopedAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_repr", "org_slug", "ip", "via"]
    list_filter = ["action", "via", "object_type", "org"]
    search_fields = ["actor", "object_repr", "org_slug", "ip"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditLog._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(BudgetEvent)
class BudgetEventAdmin(ReadOnlyScopedAdmin):
    """Budget alerts as recorded (the webhooks deliver them); written by the reconciliation and the limits stage."""

    list_display = ["created_at", "budget", "org", "kind", "threshold", "user_id", "spend", "delivered_at"]
    list_filter = ["kind", "threshold", "org"]
    search_fields = ["user_id", "budget__name", "org__name"]
    list_select_related = ["budget", "org"]
    date_hierarchy = "created_at"


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https", help_text="http(s) URL on a public address.")
    events = forms.MultipleChoiceField(
        choices=[(name, name) for name in CATALOGUE],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event but the opt-in ones (request.failed, webhook.test).",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["org", "url", "description", "events", "failed_statuses", "enabled"]

    def clean_url(self):
        return webhooks.clean_url(self.cleaned_data["url"])

    def clean_failed_statuses(self):
        return clean_statuses(self.cleaned_data["failed_statuses"] or [])


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditedAdmin):
    """Endpoints are made and changed through the webhook services: the secret is shown once, on the page after
    "Save" (rotate it from the API or the dashboard's webhooks page, which show the new one once too)."""

    form = WebhookEndpointForm
    fixed_after_create = ("org",)
    actions = ["send_test_event"]
    list_display = ["url", "org", "description", "enabled", "secret_hint", "disabled_reason", "created_at"]
    list_filter = ["enabled", "org"]
    search_fields = ["url", "description", "org__name"]
    list_select_related = ["org"]
    readonly_fields = ["secret_hint", "previous_expires_at", "failing_since", "disabled_at", "disabled_reason"]

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        data = {k: v for k, v in form.cleaned_data.items() if k != "org"}
        if change:
            webhooks.webhook_endpoint_update(actor=actor, endpoint=WebhookEndpoint.objects.get(pk=obj.pk), **data)
            return
        endpoint, secret = webhooks.webhook_endpoint_create(actor=actor, org=form.cleaned_data["org"], **data)
        obj.pk, obj._secret = endpoint.pk, secret
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):
        # The secret is rendered into this one response, never stored in the session or a message cookie.
        return TemplateResponse(
            request,
            "admin/tenancy/webhookendpoint/created.html",
            {**self.admin_site.each_context(request), "endpoint": obj, "secret": obj._secret, "opts": self.opts},
        )

    def delete_model(self, request, obj):
        webhooks.webhook_endpoint_delete(actor=admin_actor(request), endpoint=obj)

    @admin.action(description="Send a test event")
    def send_test_event(self, request, queryset):
        actor, sent = admin_actor(request), 0
        for endpoint in queryset.filter(enabled=True):
            webhooks.webhook_send_test(actor=actor, endpoint=endpoint)
            sent += 1
        self.message_user(request, f"Queued a test event to {sent} enabled endpoint(s).", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyScopedAdmin):
    """The delivery log: what each event's delivery got back; "Send again" replays the same event."""

    actions = ["send_again"]
    list_display = ["created_at", "endpoint", "event", "status", "attempts", "response_status", "next_attempt_at"]
    list_filter = ["status", "org"]
    search_fields = ["event__id", "event__type", "endpoint__url"]
    list_select_related = ["endpoint", "event"]
    date_hierarchy = "created_at"

    @admin.action(description="Send again")
    def send_again(self, request, queryset):
        actor = admin_actor(request)
        sent = 0
        for delivery in queryset.select_related("endpoint"):
            if delivery.endpoint.enabled:
                webhooks.webhook_redeliver(actor=actor, delivery=delivery)
                sent += 1
        self.message_user(request, f"Queued {sent} delivery(ies) again (disabled endpoints skipped).", messages.SUCCESS)


class AuditedUserAdmin(AuditedWritesMixin, UserAdmin):
    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        # Django saves the new password with form.save(), bypassing save_model; a redirect means it succeeded.
        if request.method == "POST" and response.status_code == 302:
            user = self.get_object(request, id)
            audit_record(
                actor=admin_actor(request), action="password_change", obj=user, object_repr=user.get_username()
            )
        return response


admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)


from . import admin_storage  # noqa: E402, F401  (the bucket's admin, registered on import)
