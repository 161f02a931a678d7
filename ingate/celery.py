"""Celery application: Redis broker when REDIS_URL is set, eager in-process tasks otherwise."""

import os

from celery import Celery
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ingate.settings")

app = Celery("ingate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="ingate.ping")
def ping() -> str:
    """A no-op the health check and tests use to prove a worker consumes the broker."""
    return "pong"


@worker_ready.connect
def resume_stalled_evals(sender, **kwargs) -> None:
    """A restarted worker takes up eval runs its predecessor left (after their heartbeat went stale)."""
    sender.app.send_task("evals.resume_stalled")


@worker_shutdown.connect
@worker_process_shutdown.connect
def flush_internal_call_records(**kwargs) -> None:
    """Eval calls made in this worker hand their records to the process's record sink: flush it on the way out."""
    from proxy.relay import ProxyApp

    app = ProxyApp.current
    if app is not None and hasattr(app.sink, "close"):
        app.sink.close()
