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
