"""Reads for the bucket export: what the record writer asks, and what the page and health show."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from tenancy.models import RunStatus, StorageExport, StorageExportRun
from tenancy.permissions import VIEW, Principal, restrict


def bodies_only_in_bucket(org_id: int) -> bool:
    """Does the org keep its bodies only in its bucket (the record writer then holds them for the export)?"""
    return StorageExport.objects.filter(org_id=org_id, enabled=True, bodies_only_in_bucket=True).exists()


def exports_for(principal: Principal) -> QuerySet[StorageExport]:
    return restrict(StorageExport.objects.select_related("org"), principal, VIEW)


def runs_for(principal: Principal) -> QuerySet[StorageExportRun]:
    return restrict(StorageExportRun.objects.select_related("org"), principal, VIEW)


def failing_exports() -> QuerySet[StorageExport]:
    """Enabled exports whose last run failed (the health check counts them; the page names them)."""
    last = StorageExportRun.objects.filter(org_id=OuterRef("org_id")).order_by("-started_at", "-pk")
    return (
        StorageExport.objects.filter(enabled=True)
        .annotate(last_status=Subquery(last.values("status")[:1]))
        .filter(last_status=RunStatus.FAILED)
    )
