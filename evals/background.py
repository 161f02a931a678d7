"""Eval runs without a Celery worker (the embedded mode): a few threads of this process run them, so queueing
a run returns at once and its page follows the progress as it would with a worker."""

from __future__ import annotations

import logging
import queue
import threading

from django.db import connection
from django.utils import timezone

from . import runner
from .models import EvalRun, RunStatus

log = logging.getLogger(__name__)


class BackgroundRuns:
    """A bounded set of threads taking run ids from a queue. Created with the app (no threads yet); the threads
    start with the first run queued, so management commands and shells never start any.

    Runs beyond `workers` wait their turn and show as queued meanwhile. Each run holds its lease and beats as
    under Celery, so a run cut short by a restart is taken up again (see `_sweep`)."""

    def __init__(self, workers: int = 2):
        self.workers = workers
        self.started_at = timezone.now()
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, run_id: int) -> None:
        self._start()
        self._queue.put(run_id)

    def _start(self) -> None:
        with self._lock:
            if self._threads:
                return
            for n in range(self.workers):
                # Daemon threads: stopping the server does not wait for a long run; its lease goes stale and the
                # next process takes it up.
                thread = threading.Thread(target=self._loop, args=(n == 0,), name=f"ingate-eval-{n}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _loop(self, sweep: bool) -> None:
        if sweep:
            self._safely(self._sweep)
        while True:
            run_id = self._queue.get()
            self._safely(runner.execute, run_id)

    def _safely(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # a broken run must not take the thread down with it
            log.exception("Background eval work %s%s failed", fn.__name__, args)
        finally:
            connection.close()  # this thread's own connection: nothing holds the database between runs

    def _sweep(self) -> None:
        """What no process is running any more: runs whose worker stopped beating, and runs queued before this
        process started (they were waiting in a queue that died with its process). `runner.claim` decides who
        runs each, so another process sweeping the same runs does no harm."""
        orphans = EvalRun.objects.filter(status=RunStatus.QUEUED, created_at__lt=self.started_at)
        for run_id in [*runner.stalled(), *orphans.values_list("pk", flat=True)]:
            self._queue.put(run_id)
