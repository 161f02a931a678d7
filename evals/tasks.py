"""Celery tasks of eval runs, and `queue_run`, the one way a run is handed to whatever executes it."""

from celery import shared_task
from django.apps import apps
from django.conf import settings

from . import runner


def queue_run(run_id: int) -> None:
    """A Celery worker runs it when there is a broker; in the embedded mode (eager Celery) a background thread
    of this process does, rather than the request that queued it."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        apps.get_app_config("evals").background.submit(run_id)
    else:
        run_eval.delay(run_id)


@shared_task(name="evals.run", ignore_result=True)
def run_eval(run_id: int) -> str:
    """Execute a queued run, or resume one whose worker died. A second delivery of the same run finds it
    taken (or finished) and does nothing."""
    return runner.execute(run_id)


@shared_task(name="evals.resume_stalled", ignore_result=True)
def resume_stalled() -> list[int]:
    """Periodic (celery beat, and once when a worker starts): requeue runs whose worker stopped beating."""
    found = runner.stalled()
    for run_id in found:
        queue_run(run_id)
    return found
