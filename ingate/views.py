"""Instance-level endpoints: the health check."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"status": "ok", "engine": connection.vendor}


def _check_redis() -> dict:
    if not settings.REDIS_URL:
        return {"status": "not configured"}
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return {"status": "ok"}


def _check_worker() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"status": "ok", "mode": "eager (no broker configured: tasks run in the web process)"}
    from ingate.celery import app

    replies = app.control.ping(timeout=settings.INGATE_HEALTH_WORKER_TIMEOUT) or []
    if not replies:
        raise RuntimeError("no Celery worker answered; start one with `celery -A ingate worker`")
    return {"status": "ok", "workers": sorted(name for reply in replies for name in reply)}


CHECKS = {"database": _check_database, "redis": _check_redis, "worker": _check_worker}


@require_GET
def health(request):
    """200 when every part answers; 503 naming what is down. No secrets, no auth (for load balancers)."""
    report, down = {}, []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            report[name] = check()
        except Exception as exc:  # a health check reports any failure rather than raising it
            report[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
            down.append(name)
        report[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    body = {"status": "down" if down else "ok", "down": down, "checks": report}
    return JsonResponse(body, status=503 if down else 200)
