"""Instance-level endpoints: the health check."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from proxy.cache import LoadingCache


def _check_database() -> dict:
    # A connection of its own, opened and closed here: a fresh connect is bounded by the connect timeout, and a
    # request's pooled connection that hangs is not the one asked.
    connection = connections.create_connection("default")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()
    return {"status": "ok", "engine": connection.vendor}


def _check_redis() -> dict:
    if not settings.REDIS_URL:
        return {"status": "not configured"}
    import redis

    timeout = settings.INGATE_HEALTH_CHECK_TIMEOUT
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()
    return {"status": "ok"}


def _limits_status() -> dict:
    """What this process's budgets and rate limits last saw of their store (no I/O; informative: while Redis is
    down each budget or limit fails open or closed as configured, which the `redis` check already reports)."""
    from proxy.relay import ProxyApp

    app = ProxyApp.current
    if app is None:
        return {"status": "not started"}
    status = app.limiter.status()
    if status.get("redis") == "down":
        return {
            "status": "degraded",
            "since": status.get("since"),
            "note": "Redis is unreachable: fail-closed budgets and limits refuse requests, fail-open ones let "
            "them through unchecked",
        }
    return {"status": "ok", "backend": status.get("backend", "memory")}


def _check_worker() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"status": "ok", "mode": "eager (no broker configured: tasks run in the web process)"}
    from ingate.celery import app

    replies = app.control.ping(timeout=settings.INGATE_HEALTH_WORKER_TIMEOUT) or []
    if not replies:
        raise RuntimeError("no Celery worker answered; start one with `celery -A ingate worker`")
    return {"status": "ok", "workers": sorted(name for reply in replies for name in reply)}


def _check_storage_exports() -> dict:
    """Orgs whose last export to their own bucket failed: reported, not `down` (one org's bucket is not the
    instance's health). A count only: this endpoint is unauthenticated; the storage page names them."""
    from observability.export.selectors import failing_exports

    failing = failing_exports().count()
    return {"status": "failing", "failing": failing} if failing else {"status": "ok"}


CHECKS = {
    "database": _check_database,
    "redis": _check_redis,
    "worker": _check_worker,
    "storage_exports": _check_storage_exports,
}
# Checks that report on the instance without deciding whether it is up: one that cannot answer (it reads the
# database, which its own check already reports) says `unknown` rather than adding itself to `down`.
ADVISORY = frozenset({"storage_exports"})

# A check still stuck from an earlier call (a hung dependency can hold a thread for a long time) is not
# started again: one stuck thread per check, however often a load balancer asks.
_running: dict[str, tuple[Future, float]] = {}
_running_lock = threading.Lock()


def _start(name: str) -> tuple[Future, float]:
    with _running_lock:
        running = _running.get(name)
        if running is not None and not running[0].done():
            return running
        future: Future = Future()
        started = time.monotonic()
        _running[name] = (future, started)

    def run() -> None:
        try:
            future.set_result(CHECKS[name]())
        except BaseException as exc:  # noqa: BLE001  (reported as the check's failure)
            future.set_exception(exc)

    threading.Thread(target=run, name=f"ingate-health-{name}", daemon=True).start()
    return future, started


@require_GET
def health(request):
    """200 when every part answers; 503 naming what is down. No secrets, no auth (for load balancers).

    The checks run at once, each given INGATE_HEALTH_CHECK_TIMEOUT seconds: one that has not answered by then
    (a hung database or Redis) is down. `serving_stale` counts the proxy's cached keys and orgs served past a
    failed reload (see proxy/cache.py)."""
    timeout = settings.INGATE_HEALTH_CHECK_TIMEOUT
    deadline = time.monotonic() + timeout
    running = {name: _start(name) for name in CHECKS}
    report, down = {}, []
    for name, (future, started) in running.items():
        try:
            report[name] = dict(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            report[name] = {"status": "down", "error": f"no answer within {time.monotonic() - started:.1f}s"}
        except Exception as exc:  # noqa: BLE001  (a health check reports any failure rather than raising it)
            report[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        if report[name]["status"] == "down":
            if name in ADVISORY:
                report[name]["status"] = "unknown"
            else:
                down.append(name)
        report[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    report["database"]["serving_stale"] = LoadingCache.serving_stale_total()
    report["limits"] = _limits_status()
    body = {"status": "down" if down else "ok", "down": down, "checks": report}
    return JsonResponse(body, status=503 if down else 200)
