"""Waiting for a run that executes in the background (a worker, or the embedded mode's threads)."""

import time

from evals.models import EvalRun


def finished(run_id: int, timeout: float = 30.0) -> EvalRun:
    """The run once it has finished (completed, cancelled or failed); fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        run = EvalRun.objects.get(pk=run_id)
        if run.finished:
            return run
        assert time.monotonic() < deadline, (
            f"run {run_id} still {run.status} after {timeout} s ({run.done}/{run.total})"
        )
        time.sleep(0.05)
