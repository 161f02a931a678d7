"""Forms of the prompt pages, and the field every form uses to take a prompt version as a person writes it."""

from __future__ import annotations

import json

from django import forms

from proxy import internal

from .models import Prompt
from .render import Rendered, RenderError, render
from .selectors import REF_HELP, PromptRefError, prompt_versions_by_ref


class PromptVersionRefField(forms.CharField):
    """A prompt version written `namespace/name@3` (see `selectors.prompt_versions_by_ref`), cleaned to the
    versions it names (one per org it exists in). `orgs`: the caller's orgs, or a callable giving them, set by
    whoever knows the caller; `prompt`: the prompt a bare number belongs to, where the form is about one."""

    def __init__(self, *, orgs=None, prompt: Prompt | None = None, **kwargs):
        kwargs.setdefault("help_text", REF_HELP)
        kwargs.setdefault("max_length", 300)
        super().__init__(**kwargs)
        self.orgs, self.prompt = orgs, prompt
        self.widget.attrs.setdefault("placeholder", "support/greeter@3")

    def clean(self, value):
        value = super().clean(value)
        if value in self.empty_values:
            return None
        orgs = self.orgs() if callable(self.orgs) else self.orgs
        try:
            return list(
                prompt_versions_by_ref(ref=value, orgs=orgs, prompt=self.prompt).select_related("prompt__namespace")
            )
        except PromptRefError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class RenderForm(forms.Form):
    """The prompt page's render form: a version with its variables, then an optional user message, for a
    provider and model. With `send`, a chat that provider would refuse (system prompt alone) is an error on
    the user message, before anything is sent; without, the same words come back as a `warning`."""

    version = PromptVersionRefField()
    provider = forms.CharField(required=False, max_length=50)
    model = forms.CharField(required=False, max_length=200)
    variables = forms.CharField(required=False)
    user = forms.CharField(required=False, label="User message")
    send = forms.BooleanField(required=False)

    def __init__(self, *args, prompt: Prompt, **kwargs):
        super().__init__(*args, **kwargs)
        self.prompt = prompt
        self.fields["version"].prompt = prompt
        self.warning = ""

    def clean_version(self):
        found = self.cleaned_data["version"]
        return found[0] if found else None

    def clean_variables(self) -> dict:
        try:
            values = json.loads(self.cleaned_data["variables"] or "{}")
        except ValueError as exc:
            raise forms.ValidationError(f"Variables are not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise forms.ValidationError('Variables are a JSON object: {"name": "value"}.')
        return values

    def clean(self):
        data = super().clean()
        version = data.get("version")
        if version is None:
            if not self.has_error("version"):
                self.add_error("version", "Pick a version.")
            return data
        data["model"] = data.get("model") or version.model
        data["provider"] = data.get("provider") or internal.guess_provider(data["model"])
        if "variables" not in data:
            return data
        try:
            rendered: Rendered = render(version.messages, version.template, version.variables, data["variables"])
        except RenderError as exc:
            self.add_error("variables", str(exc))
            return data
        data["rendered"] = rendered.followed_by(data.get("user", ""))
        try:
            internal.require_turn(data["provider"], data["rendered"].chat())
        except internal.NoTurn as exc:
            if data.get("send"):
                self.add_error("user", str(exc))
            else:
                self.warning = str(exc)
        if data.get("send") and not data["model"]:
            self.add_error("model", "Name a model to send the prompt to.")
        return data


# --- authoring: prompts, namespaces and new versions from the pages -------------------------------------------

ROLES = ("system", "developer", "user", "assistant")
VARIABLE_TYPES = ("string", "number", "integer", "boolean", "json")


class NamespaceForm(forms.Form):
    path = forms.CharField(max_length=200, help_text="Lower-case words separated by '/', e.g. support/billing.")
    description = forms.CharField(required=False, widget=forms.TextInput)


class PromptCreateForm(forms.Form):
    namespace = forms.CharField(max_length=200, help_text="An existing namespace, or a new one (made with it).")
    name = forms.CharField(max_length=100, help_text="Lower-case letters, digits, '-' and '_'.")
    description = forms.CharField(required=False, widget=forms.TextInput)
    tags = forms.CharField(required=False, help_text="Comma-separated.")

    def clean_tags(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]


def _json_object(text: str, what: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        raise forms.ValidationError(f"{what} are not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise forms.ValidationError(f'{what} are a JSON object: {{"name": value}}.')
    return value


class VersionForm(forms.Form):
    """A new version as the editor posts it: messages as parallel `role` / `content` lists (one row each;
    rows left empty are dropped), a text template, a type per detected variable (`var-<name>`, optional),
    the model, temperature and max tokens, and any other parameters as JSON."""

    template = forms.CharField(required=False, widget=forms.Textarea)
    model = forms.CharField(required=False, max_length=200)
    temperature = forms.FloatField(required=False, min_value=0, max_value=2)
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=10_000_000)
    parameters = forms.CharField(required=False, widget=forms.Textarea, label="Other parameters (JSON)")
    commit_message = forms.CharField(required=False, max_length=500)

    def __init__(self, data=None, **kwargs):
        super().__init__(data, **kwargs)
        self.rows: list[dict] = []
        self.types: dict[str, str] = {}
        if data is not None:
            roles, contents = data.getlist("role"), data.getlist("content")
            self.rows = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]
            self.types = {k[4:]: v for k, v in data.items() if k.startswith("var-") and v}

    @classmethod
    def initial_from(cls, version) -> dict:
        """What the editor starts from: a copy of `version` (or an empty system + user pair)."""
        if version is None:
            return {"rows": [{"role": "system", "content": ""}, {"role": "user", "content": ""}], "initial": {}}
        parameters = dict(version.parameters)
        initial = {
            "template": version.template,
            "model": version.model,
            "temperature": parameters.pop("temperature", None),
            "max_tokens": parameters.pop("max_tokens", None),
            "parameters": json.dumps(parameters, indent=2) if parameters else "",
        }
        rows = [
            {"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])}
            for m in version.messages
        ]
        return {"rows": rows, "initial": initial, "types": dict(version.variables)}

    def clean_parameters(self) -> dict:
        return _json_object(self.cleaned_data["parameters"], "Other parameters")

    def clean(self):
        data = super().clean()
        messages = []
        for n, row in enumerate(self.rows, 1):
            if not row["content"].strip():
                continue
            if row["role"] not in ROLES:
                self.add_error(None, f"Message {n}: the role is one of {', '.join(ROLES)}.")
            messages.append({"role": row["role"], "content": row["content"]})
        data["messages"] = messages
        bad = {name: kind for name, kind in self.types.items() if kind not in VARIABLE_TYPES}
        if bad:
            self.add_error(None, f"Variable types are one of {', '.join(VARIABLE_TYPES)}.")
        data["variables"] = self.types
        parameters = data.get("parameters") or {}
        for name in ("temperature", "max_tokens"):
            if data.get(name) is not None:
                parameters[name] = data[name]
        data["parameters"] = parameters
        return data

    def service_fields(self) -> dict:
        """The cleaned form as `services.version_create` takes it."""
        data = self.cleaned_data
        return {
            name: data[name] for name in ("messages", "template", "variables", "model", "parameters", "commit_message")
        }
