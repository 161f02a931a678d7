"""Celery tasks of tenancy: webhook deliveries. They take ids, are idempotent (an attempt claims its row first),
and never wait: a retry is a row due later, sent by the periodic sweep."""

from celery import shared_task

from .webhooks import outbox


@shared_task(name=outbox.DELIVER_TASK, ignore_result=True)
def webhooks_deliver(delivery_id: int) -> str | None:
    """The first attempt of a delivery, queued when the event's transaction commits."""
    return outbox.attempt(delivery_id)


@shared_task(name="tenancy.webhooks_deliver_due", ignore_result=True)
def webhooks_deliver_due() -> int:
    """Every INGATE_WEBHOOK_SWEEP_SECONDS (celery beat): budget events not sent yet, and every delivery whose
    attempt is due (retries, lost first attempts, attempts of a worker that died)."""
    return outbox.deliver_due()


@shared_task(name="tenancy.webhooks_prune", ignore_result=True)
def webhooks_prune() -> int:
    """Hourly (celery beat): events and delivery logs older than INGATE_WEBHOOK_LOG_DAYS are forgotten."""
    return outbox.prune()
