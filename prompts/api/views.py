"""Prompt registry API: prompts and their versions, labels, promotion, rollback, rendering and diffs."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import decorators, exceptions, mixins, permissions, response, status

from proxy.formats import of_provider
from tenancy.api.permissions import principal_of
from tenancy.api.views import ScopedViewSet
from tenancy.models import Scope

from .. import services
from ..models import Label, Namespace, Prompt, PromptVersion
from ..permissions import may_move_label
from ..render import RenderError, for_provider, render
from . import serializers as s


class PromptScopes:
    """Gateway keys: `prompts:read` to read, `prompts:write` to change (and read)."""

    @property
    def required_scope(self):
        if self.request.method in permissions.SAFE_METHODS:
            principal = principal_of(self.request)
            writer = principal.key is not None and Scope.PROMPTS_WRITE in principal.scopes
            return Scope.PROMPTS_WRITE if writer else Scope.PROMPTS_READ
        return Scope.PROMPTS_WRITE


class NamespaceViewSet(
    PromptScopes,
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
):
    """Folders of prompts; nesting is in the path (`support/billing` sits inside `support`)."""

    model = Namespace
    queryset = Namespace.objects.select_related("org")
    serializer_class = s.NamespaceSerializer
    filterset_fields = ["org", "path"]
    search_fields = ["path", "description"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        self.require_add(data["org"])
        serializer.instance = services.namespace_create(
            actor=self.actor, org=data["org"], path=data["path"], description=data.get("description", "")
        )

    def perform_update(self, serializer):
        fields = {k: v for k, v in serializer.validated_data.items() if k == "description"}
        serializer.instance = services.namespace_update(actor=self.actor, namespace=serializer.instance, **fields)


class PromptViewSet(
    PromptScopes,
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
):
    """Prompts of your organizations. Gateway keys: `prompts:read` to read, `prompts:write` to change."""

    model = Prompt
    queryset = Prompt.objects.select_related("namespace", "org").prefetch_related("labels__version")
    serializer_class = s.PromptSerializer
    filterset_fields = ["org", "namespace__path", "name"]
    search_fields = ["name", "description", "namespace__path"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        self.require_add(data["org"])
        serializer.instance = services.prompt_create(
            actor=self.actor,
            org=data["org"],
            namespace=data["namespace"]["path"],
            name=data["name"],
            description=data.get("description", ""),
            tags=data.get("tags", []),
        )

    def perform_update(self, serializer):
        fields = {k: v for k, v in serializer.validated_data.items() if k in ("description", "tags")}
        serializer.instance = services.prompt_update(actor=self.actor, prompt=serializer.instance, **fields)

    def _version(self, prompt: Prompt, number: int) -> PromptVersion:
        return get_object_or_404(PromptVersion, prompt=prompt, number=number)

    @extend_schema(
        request=s.VersionSerializer, responses={200: s.VersionSerializer(many=True), 201: s.VersionSerializer}
    )
    @decorators.action(detail=True, methods=["get", "post"])
    def versions(self, request, pk=None):
        """GET: every version, newest first. POST: a new version (versions are never edited)."""
        prompt = self.get_object()
        if request.method == "GET":
            return response.Response(s.VersionSerializer(prompt.versions.all(), many=True).data)
        self.require_add(prompt.org)
        incoming = s.VersionSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        version = services.version_create(actor=self.actor, prompt=prompt, **incoming.validated_data)
        return response.Response(s.VersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.SetLabelSerializer, responses={200: s.LabelSerializer})
    @decorators.action(detail=True, methods=["post"])
    def labels(self, request, pk=None):
        """Point a label (development, staging, production or your own) at a version."""
        prompt = self.get_object()
        data = self._valid(s.SetLabelSerializer, request)
        self._require_move(prompt, data["name"])
        label = services.label_set(
            actor=self.actor, prompt=prompt, name=data["name"], version=self._version(prompt, data["version"])
        )
        return response.Response(s.LabelSerializer(label).data)

    @extend_schema(request=s.PromoteSerializer, responses={200: s.LabelSerializer})
    @decorators.action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Point `target` at the version `source` points at (e.g. staging → production)."""
        data = self._valid(s.PromoteSerializer, request)
        prompt = self.get_object()
        self._require_move(prompt, data["target"])
        label = services.label_promote(actor=self.actor, prompt=prompt, source=data["source"], target=data["target"])
        return response.Response(s.LabelSerializer(label).data)

    @extend_schema(request=s.RollbackSerializer, responses={200: s.LabelSerializer})
    @decorators.action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Point a label back at the version it pointed to before its last move."""
        data = self._valid(s.RollbackSerializer, request)
        prompt = self.get_object()
        self._require_move(prompt, data["label"])
        label = services.label_rollback(actor=self.actor, prompt=prompt, name=data["label"])
        return response.Response(s.LabelSerializer(label).data)

    @extend_schema(responses={200: s.LabelMoveSerializer(many=True)})
    @decorators.action(detail=True)
    def history(self, request, pk=None):
        """Every label move, newest first."""
        moves = self.get_object().label_moves.select_related("from_version", "to_version")
        return response.Response(s.LabelMoveSerializer(moves, many=True).data)

    @extend_schema(request=s.RenderSerializer, responses={200: dict})
    @decorators.action(detail=True, methods=["post"], url_path="render")
    def render_prompt(self, request, pk=None):
        """Render a version (by number or label) with variables, ready for OpenAI or Anthropic."""
        prompt = self.get_object()
        data = self._valid(s.RenderSerializer, request)
        if "label" in data:
            label = Label.objects.filter(prompt=prompt, name=data["label"]).select_related("version").first()
            if label is None:
                raise exceptions.ValidationError({"label": [f"{prompt.ref} has no '{data['label']}' label."]})
            version = label.version
        else:
            version = self._version(prompt, data["version"])
        try:
            rendered = render(version.messages, version.template, version.variables, data["variables"])
        except RenderError as exc:
            raise exceptions.ValidationError({"variables": [str(exc)]}) from None
        rendered = rendered.followed_by(data["user"])
        body = {"model": version.model, **version.parameters, **for_provider(rendered, of_provider(data["provider"]))}
        return response.Response({"version": version.number, "request": body, "unused_variables": rendered.unused})

    @extend_schema(parameters=[OpenApiParameter("from", int), OpenApiParameter("to", int)], responses={200: dict})
    @decorators.action(detail=True)
    def diff(self, request, pk=None):
        """A unified diff between two versions (`?from=1&to=3`)."""
        prompt = self.get_object()
        try:
            old, new = int(request.query_params["from"]), int(request.query_params["to"])
        except (KeyError, ValueError):
            raise exceptions.ValidationError({"from": ["Give ?from= and ?to= version numbers."]}) from None
        return response.Response(
            {
                "from": old,
                "to": new,
                "diff": services.version_diff(self._version(prompt, old), self._version(prompt, new)),
            }
        )

    @extend_schema(request=None, responses={200: s.PromptSerializer})
    @decorators.action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        prompt = self.get_object()
        self.require_add(prompt.org)
        return response.Response(s.PromptSerializer(services.prompt_archive(actor=self.actor, prompt=prompt)).data)

    def _require_move(self, prompt: Prompt, name: str) -> None:
        if not may_move_label(self.principal, prompt, name):
            raise exceptions.PermissionDenied(f"Your role may not move the '{name}' label of {prompt.ref}.")

    def _valid(self, serializer_class, request) -> dict:
        incoming = serializer_class(data=request.data)
        incoming.is_valid(raise_exception=True)
        return incoming.validated_data
