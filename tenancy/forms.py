"""The routes page's forms (a route's settings, and its targets as rows: a blank row is no target), and the
budgets and rate limits pages' forms."""

from __future__ import annotations

import json

from django import forms

from .models import (
    DEFAULT_THRESHOLDS,
    MAX_TARGETS,
    APIKey,
    App,
    LimitScope,
    Organization,
    Period,
    ProviderCredential,
    Strategy,
    Team,
    model_name_validators,
    provider_names_of,
)


class RouteForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="What clients send as model.")
    strategy = forms.ChoiceField(choices=Strategy.choices, initial=Strategy.FALLBACK)
    enabled = forms.BooleanField(required=False, initial=True)
    retry_on_statuses = forms.CharField(
        required=False,
        label="Also move on at",
        help_text="Statuses besides 429 and 5xx, comma-separated: 400, 401",
    )
    retries_per_target = forms.IntegerField(min_value=0, max_value=5, initial=0)
    max_attempts = forms.IntegerField(min_value=1, max_value=10, initial=3)
    deadline_seconds = forms.FloatField(min_value=0.1, max_value=3600, initial=60, label="Deadline (s)")
    first_byte_timeout_seconds = forms.FloatField(
        required=False, min_value=0.1, max_value=600, label="First byte within (s)"
    )
    drop_unsupported = forms.BooleanField(required=False, label="Drop untranslatable parameters")

    def clean_retry_on_statuses(self) -> list[int]:
        text = self.cleaned_data["retry_on_statuses"].replace(";", ",")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not all(p.isascii() and p.isdigit() for p in parts):
            raise forms.ValidationError("Give HTTP statuses as numbers separated by commas, such as 400, 401.")
        return [int(p) for p in parts]


class TargetForm(forms.Form):
    provider = forms.ChoiceField(required=False)
    model = forms.CharField(required=False, max_length=200, validators=model_name_validators)
    credential = forms.ChoiceField(required=False, label="Key")
    weight = forms.IntegerField(min_value=1, max_value=1000, initial=1)
    params = forms.CharField(required=False, label="Parameters (JSON)")

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [("", "—")] + [(p, p) for p in sorted(provider_names_of(org.pk))]
        names = ProviderCredential.objects.filter(org=org).order_by("name").values_list("name", flat=True)
        self.fields["credential"].choices = [("", "the provider's own")] + [(n, n) for n in names]

    @property
    def is_blank(self) -> bool:
        data = getattr(self, "cleaned_data", {})
        return not data.get("provider") and not data.get("model")

    def clean_params(self) -> dict:
        text = self.cleaned_data["params"].strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except ValueError:
            raise forms.ValidationError(
                'Write the parameters as a JSON object, such as {"temperature": 0.2}.'
            ) from None

    def clean(self):
        data = super().clean()
        if not self.is_blank:
            for field in ("provider", "model"):
                if not data.get(field) and field not in self.errors:
                    self.add_error(field, "Needed for a target.")
        return data


class BaseTargetFormSet(forms.BaseFormSet):
    def __init__(self, *args, org: Organization, **kwargs):
        self.org = org
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index):
        return {**super().get_form_kwargs(index), "org": self.org}

    @property
    def empty_form(self):
        return self.form(auto_id=self.auto_id, prefix=self.add_prefix("__prefix__"), empty_permitted=True, org=self.org)

    def targets(self) -> list[dict]:
        """The filled rows, in order, as the route services take them (the credential still by name)."""
        return [
            {k: f.cleaned_data[k] for k in ("provider", "model", "credential", "weight", "params")}
            for f in self.forms
            if f.cleaned_data and not f.is_blank
        ]


def target_formset(org: Organization, data=None, initial: list[dict] | None = None) -> BaseTargetFormSet:
    """The target rows: the route's targets, then a few blank rows for new ones."""
    initial = initial or []
    extra = min(2 if initial else 3, MAX_TARGETS - len(initial))
    cls = forms.formset_factory(
        TargetForm, formset=BaseTargetFormSet, extra=extra, max_num=MAX_TARGETS, absolute_max=MAX_TARGETS
    )
    return cls(data, initial=initial, prefix="t", org=org)


class ScopedLimitForm(forms.Form):
    """What a budget or rate limit applies to; the team, app and key offered are the org's. The services check
    the combination (tenancy.limits), and their errors come back on these fields."""

    name = forms.CharField(required=False, max_length=200)
    scope = forms.ChoiceField(choices=LimitScope.choices, initial=LimitScope.ORG, label="Applies to")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False)
    app = forms.ModelChoiceField(
        queryset=App.objects.none(), required=False, help_text="App scope; or, for a user, only in this app."
    )
    key = forms.ModelChoiceField(queryset=APIKey.objects.none(), required=False, label="Gateway key")
    user_id = forms.CharField(
        required=False, max_length=200, label="End user", help_text="User scope; empty with an app: each user of it."
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.filter(org=org).order_by("name")
        self.fields["app"].queryset = App.objects.filter(org=org).order_by("name")
        self.fields["key"].queryset = APIKey.objects.filter(org=org, revoked_at__isnull=True).order_by("name")
        self.fields["key"].label_from_instance = lambda key: f"{key.name} ({key.display})"


class BudgetForm(ScopedLimitForm):
    amount_usd = forms.DecimalField(label="Amount (USD)", max_digits=16, decimal_places=6, min_value=0.000001)
    period = forms.ChoiceField(choices=Period.choices, initial=Period.MONTH)
    hard = forms.BooleanField(required=False, initial=True, label="Hard (refuse once reached)")
    thresholds = forms.CharField(
        required=False,
        label="Alert at (%)",
        initial=", ".join(str(t) for t in DEFAULT_THRESHOLDS),
        help_text="Percentages, comma-separated: 50, 80, 100",
    )
    fail_open = forms.BooleanField(required=False, label="Let requests through when Redis is down")

    def clean_thresholds(self) -> list[int]:
        parts = [p.strip().rstrip("%") for p in self.cleaned_data["thresholds"].replace(";", ",").split(",")]
        parts = [p for p in parts if p]
        if not all(p.isascii() and p.isdigit() for p in parts):
            raise forms.ValidationError("Give percentages as whole numbers separated by commas, such as 50, 80, 100.")
        return [int(p) for p in parts]


class RateLimitForm(ScopedLimitForm):
    requests_per_minute = forms.IntegerField(required=False, min_value=1, label="Requests / minute")
    tokens_per_minute = forms.IntegerField(required=False, min_value=1, label="Tokens / minute")
    concurrent = forms.IntegerField(required=False, min_value=1, label="Concurrent requests")
    count_cache_reads = forms.BooleanField(required=False, label="Count cache reads as tokens")
    fail_open = forms.BooleanField(required=False, initial=True, label="Let requests through when Redis is down")
