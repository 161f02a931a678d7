"""Celery application: Redis broker when REDIS_URL is set, eager in-process tasks otherwise."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ingate.settings")

app = Celery("ingate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="ingate.ping")
def ping() -> str:
    """A no-op the health check and tests use to prove a worker consumes the broker."""
    return "pong"
