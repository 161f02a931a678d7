from celery import shared_task

from . import runner


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
        run_eval.delay(run_id)
    return found
