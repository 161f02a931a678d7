from celery import shared_task

from . import retention


@shared_task(name="observability.enforce_retention")
def enforce_retention() -> dict[str, int]:
    """Hourly (celery beat): retention and tomorrow's partitions. Idempotent, safe to run twice."""
    return retention.enforce_retention()
