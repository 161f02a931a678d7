from celery import shared_task

from . import limits, retention
from .export import runs as exports
from .pipeline import INGEST_TASK, RecordPipeline


@shared_task(name="observability.enforce_retention")
def enforce_retention() -> dict[str, int]:
    """Hourly (celery beat): retention and tomorrow's partitions. Idempotent, safe to run twice."""
    return retention.enforce_retention()


@shared_task(name=INGEST_TASK, ignore_result=True)
def ingest_records() -> int:
    """Insert what gateways put on the record stream (and what a dead worker had read). Safe to run many at
    once: the consumer group hands each entry to one of them."""
    return RecordPipeline().drain()


@shared_task(name="observability.reconcile_budgets", ignore_result=True)
def reconcile_budgets() -> dict[str, int]:
    """Every minute (celery beat): each budget's spend recomputed from the database, compared with the limits
    engine's counters (drift logged), and the threshold alerts it crossed recorded. Idempotent."""
    return limits.reconcile_budgets()


@shared_task(name="observability.export_storage", ignore_result=True)
def export_storage() -> int:
    """Every INGATE_STORAGE_EXPORT_SECONDS (celery beat): each org's due hours written to its bucket. Idempotent."""
    return exports.export_due()


@shared_task(name="observability.export_storage_org", ignore_result=True)
def export_storage_org(org_id: int) -> None:
    """One org's export now (the page's "Run now"); the same objects as a scheduled run would write."""
    exports.export_org(org_id, trigger="manual")
