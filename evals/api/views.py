"""Evals API: datasets and their versions and items (import/export JSONL and CSV), eval runs (queue, status,
results, cancel), comparisons and the evaluator catalogue. Gateway keys need the `evals:run` scope."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import decorators, exceptions, mixins, parsers, response, status, views

from observability.api.views import stream_lines
from tenancy.api.params import int_param
from tenancy.api.permissions import principal_of
from tenancy.api.views import ScopedViewSet
from tenancy.models import Scope
from tenancy.permissions import can

from .. import compare as comparing
from .. import evaluators, services, transfer
from ..models import Dataset, EvalRun, EvalTarget
from ..runner import summarize
from . import serializers as s


def _items(raw: list) -> list[transfer.ItemData]:
    cleaned, errors = [], {}
    for n, item in enumerate(raw):
        try:
            cleaned.append(transfer.clean_item(item))
        except ValueError as exc:
            errors[f"items.{n}"] = str(exc)
    if errors:
        raise exceptions.ValidationError(errors)
    return cleaned


class DatasetViewSet(
    ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin
):
    """Datasets of your organizations; every change to their items is a new immutable version."""

    model = Dataset
    required_scope = Scope.EVALS_RUN
    queryset = Dataset.objects.select_related("org").filter(archived_at__isnull=True)
    serializer_class = s.DatasetSerializer
    filterset_fields = ["org", "name"]
    search_fields = ["name", "description"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        self.require_add(data["org"])
        if Dataset.objects.filter(org=data["org"], name=data["name"].strip()).exists():
            raise exceptions.ValidationError({"name": "A dataset with this name already exists in the organization."})
        serializer.instance = services.dataset_create(
            actor=self.actor,
            org=data["org"],
            name=data["name"],
            description=data.get("description", ""),
            items=_items(data.get("items", [])),
        )

    def perform_update(self, serializer):
        serializer.instance = services.dataset_update(
            actor=self.actor, dataset=serializer.instance, **serializer.validated_data
        )

    @extend_schema(request=None, responses={200: s.DatasetSerializer})
    @decorators.action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        """Hide the dataset from lists; its versions stay, as do the runs that used them."""
        dataset = self._changed(self.get_object())
        return response.Response(
            s.DatasetSerializer(
                services.dataset_archive(actor=self.actor, dataset=dataset), context={"request": request}
            ).data
        )

    def _version(self, dataset: Dataset):
        number = int_param(self.request.query_params.get("version"), "version", message="A version number.")
        if number is not None:
            return get_object_or_404(dataset.versions, number=number)
        latest = dataset.latest
        if latest is None:
            raise exceptions.NotFound("This dataset has no versions.")
        return latest

    def _changed(self, dataset: Dataset) -> Dataset:
        if not can(self.principal, "change", dataset):
            raise exceptions.PermissionDenied("Your role does not allow you to change this dataset.")
        return dataset

    @extend_schema(responses={200: s.DatasetVersionSerializer(many=True)})
    @decorators.action(detail=True)
    def versions(self, request, pk=None):
        """Every version, newest first."""
        return response.Response(s.DatasetVersionSerializer(self.get_object().versions.all(), many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("version", int, description="A version number; default the latest.")],
        request=s.AddItemsSerializer,
        responses={200: s.ItemSerializer(many=True), 201: s.DatasetVersionSerializer},
    )
    @decorators.action(detail=True, methods=["get", "post"])
    def items(self, request, pk=None):
        """GET: a version's items. POST: add items (a new version)."""
        dataset = self.get_object()
        if request.method == "GET":
            return response.Response(s.ItemSerializer(self._version(dataset).items.all(), many=True).data)
        incoming = s.AddItemsSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        version = services.items_add(
            actor=self.actor,
            dataset=self._changed(dataset),
            items=_items(incoming.validated_data["items"]),
            message=incoming.validated_data.get("message", ""),
        )
        return response.Response(s.DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.RemoveItemsSerializer, responses={201: s.DatasetVersionSerializer})
    @decorators.action(detail=True, methods=["post"], url_path="remove-items")
    def remove_items(self, request, pk=None):
        """Remove items by key (a new version)."""
        dataset = self._changed(self.get_object())
        incoming = s.RemoveItemsSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        version = services.items_remove(
            actor=self.actor,
            dataset=dataset,
            keys=incoming.validated_data["keys"],
            message=incoming.validated_data.get("message", ""),
        )
        return response.Response(s.DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request={"multipart/form-data": s.ImportSerializer}, responses={201: s.DatasetVersionSerializer})
    @decorators.action(
        detail=True, methods=["post"], url_path="import", parser_classes=[parsers.MultiPartParser, parsers.FormParser]
    )
    def import_items(self, request, pk=None):
        """Import a JSONL or CSV file as a new version, appended to the latest items or replacing them. Bad rows
        are all reported by line number and nothing is imported."""
        dataset = self._changed(self.get_object())
        incoming = s.ImportSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        upload = incoming.validated_data["file"]
        try:
            items = transfer.read_upload(upload)
        except transfer.DatasetImportError as exc:
            raise exceptions.ValidationError({"file": exc.lines()}) from None
        message = incoming.validated_data.get("message") or f"Imported {upload.name}"
        if incoming.validated_data["mode"] == "replace":
            version = services.version_create(actor=self.actor, dataset=dataset, items=items, message=message)
        else:
            version = services.items_add(actor=self.actor, dataset=dataset, items=items, message=message)
        return response.Response(s.DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("version", int), OpenApiParameter("export_format", str, enum=["jsonl", "csv"])],
        responses={200: OpenApiTypes.BINARY},
    )
    @decorators.action(detail=True)
    def export(self, request, pk=None):
        """A version's items as JSONL (default) or CSV, streamed."""
        dataset = self.get_object()
        version = self._version(dataset)
        # Not `format`: DRF reads that as the renderer to use and answers 404 for "jsonl" (as the records export).
        kind = request.query_params.get("export_format", "jsonl")
        if kind not in ("jsonl", "csv"):
            raise exceptions.ValidationError({"export_format": "jsonl or csv."})
        items = (services.item_data(item) for item in version.items.iterator(chunk_size=500))
        lines = transfer.to_csv(items) if kind == "csv" else transfer.to_jsonl(items)
        reply = StreamingHttpResponse(
            stream_lines(lines), content_type="text/csv" if kind == "csv" else "application/x-ndjson"
        )
        # Quoted by Django: a dataset's name may hold quotes or non-ASCII letters.
        reply["Content-Disposition"] = content_disposition_header(True, f"{dataset.name}-v{version.number}.{kind}")
        return reply

    @extend_schema(request=s.FromRecordsSerializer, responses={201: s.DatasetVersionSerializer})
    @decorators.action(detail=True, methods=["post"], url_path="from-records")
    def from_records(self, request, pk=None):
        """Add items made from request records (their messages as input, their answer as expected output)."""
        dataset = self._changed(self.get_object())
        incoming = s.FromRecordsSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        # A service's ValidationError becomes a 400 with field errors in the global handler, as in every app.
        version = services.items_from_records(
            actor=self.actor, dataset=dataset, record_ids=[str(r) for r in incoming.validated_data["records"]]
        )
        return response.Response(s.DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class RunViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Eval runs: a dataset version × targets × evaluators, queued to Celery workers."""

    model = EvalRun
    required_scope = Scope.EVALS_RUN
    queryset = EvalRun.objects.select_related("org", "dataset_version").prefetch_related("targets")
    serializer_class = s.RunSerializer
    filterset_fields = ["org", "status", "dataset_version"]
    http_method_names = ["get", "post", "head", "options"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        self.require_add(data["org"])
        version = data["dataset_version"]
        serializer.instance = services.run_create(
            actor=self.actor,
            org=data["org"],
            dataset_version=version,
            targets=data["targets"],
            evaluators=data.get("evaluators", []),
            name=data.get("name", ""),
            concurrency=data.get("concurrency"),
        )

    def retrieve(self, request, *args, **kwargs):
        run = self.get_object()
        data = s.RunSerializer(run).data
        if not run.finished:  # live aggregates while it runs
            for target, row in zip(run.targets.all(), data["target_list"], strict=True):
                row["summary"] = summarize(target)
        return response.Response(data)

    @extend_schema(request=None, responses={200: s.RunSerializer})
    @decorators.action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop a run: queued ones at once; running ones finish as cancelled with the results done so far."""
        run = self.get_object()
        if not can(self.principal, "change", run):
            raise exceptions.PermissionDenied("Your role does not allow you to cancel this run.")
        return response.Response(s.RunSerializer(services.run_cancel(actor=self.actor, run=run)).data)

    @extend_schema(
        parameters=[OpenApiParameter("target", int, description="Only this target (position).")],
        responses={200: s.ResultSerializer(many=True)},
    )
    @decorators.action(detail=True)
    def results(self, request, pk=None):
        """Per item and target: the output, each evaluator's score and explanation, tokens, cost, latency."""
        run = self.get_object()
        rows = run.results.select_related("target", "item").order_by("item__position", "target__position")
        target = int_param(request.query_params.get("target"), "target", message="A target position: 0, 1, …")
        if target is not None:
            rows = rows.filter(target__position=target)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.ResultSerializer(page, many=True).data)


def _target(principal, spec: str, name: str) -> EvalTarget:
    try:
        return comparing.target_of(principal, spec)
    except ValueError as exc:
        raise exceptions.ValidationError({name: str(exc)}) from None


class ComparisonView(views.APIView):
    """Two targets side by side: per-item outputs, score deltas, regressions and improvements, aggregate deltas."""

    required_scope = Scope.EVALS_RUN

    @extend_schema(
        parameters=[
            OpenApiParameter("a", str, required=True, description="<run id>[:<target position>], the baseline"),
            OpenApiParameter("b", str, required=True, description="<run id>[:<target position>]"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        principal = principal_of(request)
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        missing = {n: "Required." for n, v in (("a", a), ("b", b)) if not v}
        if missing:
            raise exceptions.ValidationError(missing)
        return response.Response(comparing.compare(_target(principal, a, "a"), _target(principal, b, "b")))


class EvaluatorCatalogueView(views.APIView):
    """The evaluators a run may use, with their settings."""

    required_scope = Scope.EVALS_RUN

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return response.Response(evaluators.catalogue())
