"""Executing an eval run: every (target, item) pair without a result is sent through the gateway's own proxy
path (proxy/internal.py), scored, and stored, at most `run.concurrency` at a time.

A worker takes a run by writing its lease (only a queued run, or a running one whose heartbeat stopped); it
beats while it works, and stops taking items when the run is cancelled or its lease is taken over. Results
are unique per (target, item) and the run's counters move in the same transaction as the result, so a run
resumed after its worker died continues where it stopped and counts nothing twice. A beat task
(`evals.resume_stalled`) requeues runs whose worker went quiet and fails them after too many attempts."""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from observability.selectors import p50_p95
from prompts.render import RenderError, render
from proxy import internal
from proxy.relay import gateway
from tenancy.webhooks import sources as webhook_sources

from .evaluators import Case, Context, JudgeReply, Verdict, build_all
from .models import DatasetItem, EvalResult, EvalRun, EvalTarget, RunStatus

log = logging.getLogger(__name__)


def claim(run_id: int, lease: uuid.UUID) -> bool:
    """Take the run if it is queued, or running with a heartbeat older than the stall limit."""
    now = timezone.now()
    stale = now - datetime.timedelta(seconds=settings.INGATE_EVAL_STALL_SECONDS)
    taken = EvalRun.objects.filter(
        Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale),
        pk=run_id,
    ).update(
        status=RunStatus.RUNNING,
        lease=lease,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        started_at=Coalesce("started_at", now),
    )
    return taken == 1


class NothingToSend(Exception):
    """The item has no messages and the target no prompt: an error of that item, like a prompt that cannot render."""


def messages_for(target: EvalTarget, item: DatasetItem) -> list[dict]:
    """What the target sends for the item: the prompt version rendered with the item's variables (or the
    target's own messages with {{placeholders}} filled), followed by the item's messages."""
    own: list[dict] = []
    if target.prompt_version is not None:
        version = target.prompt_version
        rendered = render(version.messages, version.template, version.variables, item.variables or {})
        own = rendered.chat()
    elif target.messages:
        rendered = render(target.messages, "", {}, item.variables or {})
        own = rendered.messages
    combined = own + list(item.messages or [])
    if not combined:
        raise NothingToSend("The item has no messages and the target no prompt to give it.")
    return combined


class Execution:
    """One worker's pass over a run it has claimed."""

    def __init__(self, run: EvalRun, lease: uuid.UUID):
        # A run starts from the org's credentials as the database has them now: worker processes hear no cache
        # invalidations (only serving gateways listen), and a change since the last run must not wait out the TTL.
        gateway().credentials.invalidate(run.org_id)
        self.run = run
        self.lease = lease
        self.abort = asyncio.Event()  # set when the run is cancelled or taken over: calls in flight hang up
        self.principal = internal.Principal(org_id=run.org_id, org_slug=run.org.slug)
        self.evaluators = build_all(run.evaluators)
        self.context = Context(ask=self._judge)
        self.db = ThreadPoolExecutor(1, thread_name_prefix="ingate-eval-db")  # one connection, closed at the end

    async def _orm(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.db, fn, *args)

    async def go(self) -> None:
        try:
            pending = iter(await self._orm(self._pending))
            heart = asyncio.get_running_loop().create_task(self._beat())
            async with internal.sessions():
                # `concurrency` workers share one iterator: each pair goes to one of them, and a run of any size
                # holds only that many calls (and coroutines) at a time.
                await asyncio.gather(*(self._worker(pending) for _ in range(self.run.concurrency)))
            heart.cancel()
            await asyncio.gather(heart, return_exceptions=True)
            await self._orm(self._finish)
        finally:
            await self._orm(lambda: connection.close())  # looked up in the DB thread: its own connection
            self.db.shutdown()

    async def _worker(self, pending) -> None:
        for target, item in pending:
            if self.abort.is_set():
                return
            try:
                await self._score(target, item)
            except Exception:  # one item's bug must not sink the run; the item stays pending
                log.exception("Eval run %s: item %s on target %s failed", self.run.pk, item.pk, target.pk)

    def _pending(self) -> list[tuple[EvalTarget, DatasetItem]]:
        targets = list(self.run.targets.select_related("prompt_version"))
        items = list(self.run.dataset_version.items.all())
        done = set(EvalResult.objects.filter(run=self.run).values_list("target_id", "item_id"))
        # Item by item across targets, so a cancelled or failed run has comparable results for every target.
        return [(t, i) for i in items for t in targets if (t.pk, i.pk) not in done]

    async def _score(self, target: EvalTarget, item: DatasetItem) -> None:
        try:
            messages = messages_for(target, item)
            internal.require_turn(target.provider, messages)  # a system prompt alone: Anthropic/Gemini refuse it
        except (RenderError, NothingToSend, internal.NoTurn) as exc:
            answer = None
            reason = (
                f"The prompt could not be rendered for this item: {exc}" if isinstance(exc, RenderError) else str(exc)
            )
            case = Case(
                output="", expected=item.expected, variables=item.variables, metadata=item.metadata, error=reason
            )
        else:
            answer = await internal.chat(
                self.principal,
                target.provider,
                target.model,
                messages,
                target.parameters,
                tags={"eval-run": self.run.pk, "eval-target": target.pk, "eval-item": item.key.hex},
                session_id=self.run.session_id,
                user_id=self.run.created_by_name,
                client="ingate-evals",
                prompt_version_id=target.prompt_version_id,
                abort=self.abort,
            )
            if self.abort.is_set():
                return  # hung up mid-call: not a result (the record says client_disconnect)
            case = Case(
                output=answer.text,
                expected=item.expected,
                messages=messages,
                variables=item.variables,
                metadata=item.metadata,
                latency_ms=answer.latency_ms,
                cost=answer.cost,
                error=answer.error,
            )
        verdicts: list[tuple[str, str, Verdict]] = []
        for evaluator in self.evaluators:
            verdicts.append((evaluator.name, evaluator.kind, await evaluator.evaluate(case, self.context)))
        if not await self._orm(self._save, target, item, answer, case, verdicts):
            self.abort.set()

    async def _judge(self, provider: str, model: str, messages: list[dict], params: dict) -> JudgeReply:
        try:
            answer = await internal.chat(
                self.principal,
                provider,
                model,
                messages,
                params,
                tags={"eval-run": self.run.pk, "eval-judge": "1"},
                session_id=self.run.session_id,
                user_id=self.run.created_by_name,
                client="ingate-evals-judge",
                abort=self.abort,
            )
        except (ValueError, KeyError, TypeError) as exc:  # e.g. a judge provider the gateway cannot route
            return JudgeReply(text="", error=f"{type(exc).__name__}: {exc}")
        return JudgeReply(text=answer.text, error=answer.error, cost=answer.cost, request_id=answer.request_id)

    def _save(self, target, item, answer, case: Case, verdicts) -> bool:
        """Store one result and count it, once. False when the run should stop (cancelled, lease lost)."""
        judge_costs = [v.cost for _, _, v in verdicts if v.cost is not None]
        result = EvalResult(
            run=self.run,
            target=target,
            item=item,
            output=case.output,
            error=case.error,
            scores=[{"name": name, "kind": kind, **v.as_dict()} for name, kind, v in verdicts],
            passed=not case.error and all(v.passed for _, _, v in verdicts),
            input_tokens=answer.input_tokens if answer else None,
            output_tokens=answer.output_tokens if answer else None,
            cost=Decimal(str(answer.cost)) if answer and answer.cost is not None else None,
            judge_cost=Decimal(str(sum(judge_costs))) if judge_costs else None,
            latency_ms=answer.latency_ms if answer else None,
            request_id=answer.request_id if answer else "",
        )
        try:
            with transaction.atomic():
                mine = EvalRun.objects.select_for_update().filter(pk=self.run.pk, lease=self.lease).first()
                if mine is None:
                    return False  # another worker took the run over: its results count, not ours
                result.save()
                EvalRun.objects.filter(pk=self.run.pk).update(
                    done=F("done") + 1, failed=F("failed") + (1 if case.error else 0), heartbeat_at=timezone.now()
                )
        except IntegrityError:
            return True  # already stored by an earlier attempt: counted then, not again
        return mine.status == RunStatus.RUNNING

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(settings.INGATE_EVAL_HEARTBEAT_SECONDS)
            if not await self._orm(self._heartbeat):
                self.abort.set()  # cancelled or taken over: hang up on the calls in flight
                return

    def _heartbeat(self) -> bool:
        EvalRun.objects.filter(pk=self.run.pk, lease=self.lease).update(heartbeat_at=timezone.now())
        return EvalRun.objects.filter(pk=self.run.pk, lease=self.lease, status=RunStatus.RUNNING).exists()

    def _finish(self) -> None:
        with transaction.atomic():
            run = EvalRun.objects.select_for_update().filter(pk=self.run.pk, lease=self.lease).first()
            if run is None:
                return
            for target in run.targets.all():
                target.summary = summarize(target)
                target.save(update_fields=["summary"])
            if run.status == RunStatus.CANCELLING:
                run.status = RunStatus.CANCELLED
            elif run.done >= run.total:
                run.status = RunStatus.COMPLETED
            else:
                # Items left behind by errors in Ingate itself (logged): let the stall check retry them.
                return
            run.finished_at, run.lease = timezone.now(), None
            run.save(update_fields=["status", "finished_at", "lease"])
            if run.status == RunStatus.COMPLETED:
                webhook_sources.eval_run_finished(run, completed=True)


def execute(run_id: int) -> str:
    """Run (or resume) a run; the Celery task's body. Returns what happened, for the task result."""
    close_old_connections()
    lease = uuid.uuid4()
    if not claim(run_id, lease):
        return "not claimed"
    run = EvalRun.objects.select_related("org", "dataset_version").get(pk=run_id)
    if not run.org.is_active:
        fail(run, "The organization is deactivated: its runs make no more calls.")
        return "failed"
    if run.attempts > settings.INGATE_EVAL_MAX_ATTEMPTS:
        fail(run, f"Gave up after {run.attempts - 1} attempts; the results so far are kept.")
        return "failed"
    try:
        asyncio.run(Execution(run, lease).go())
    except Exception as exc:
        log.exception("Eval run %s failed", run_id)
        fail(run, f"The run failed: {type(exc).__name__}: {exc}")
        return "failed"
    return EvalRun.objects.values_list("status", flat=True).get(pk=run_id)


def fail(run: EvalRun, reason: str) -> None:
    with transaction.atomic():
        for target in run.targets.all():
            target.summary = summarize(target)
            target.save(update_fields=["summary"])
        EvalRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=reason, finished_at=timezone.now(), lease=None
        )
        run.refresh_from_db(fields=["status", "error", "finished_at", "total", "done", "failed"])
        webhook_sources.eval_run_finished(run, completed=False)


def stalled() -> list[int]:
    """Running runs whose worker stopped beating (killed, lost): requeue them or, past the attempt limit, fail."""
    stale = timezone.now() - datetime.timedelta(seconds=settings.INGATE_EVAL_STALL_SECONDS)
    return list(EvalRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale).values_list("pk", flat=True))


# --- aggregates ---------------------------------------------------------------------------------------


def summarize(target: EvalTarget) -> dict[str, Any]:
    """Per target: items done, errors, pass rate, mean score and pass rate per evaluator, total cost (calls and
    judges), tokens, latency p50/p95."""
    rows = list(
        target.results.values(
            "scores", "passed", "error", "cost", "judge_cost", "latency_ms", "input_tokens", "output_tokens"
        )
    )
    evaluators: dict[str, dict[str, Any]] = {}
    for row in rows:
        for score in row["scores"]:
            entry = evaluators.setdefault(score["name"], {"kind": score.get("kind", ""), "scores": [], "passed": 0})
            entry["scores"].append(float(score["score"]))
            entry["passed"] += 1 if score["passed"] else 0
    p50, p95 = p50_p95([row["latency_ms"] for row in rows if row["latency_ms"] is not None])
    cost = sum((row["cost"] or 0) + (row["judge_cost"] or 0) for row in rows)
    count = len(rows)
    return {
        "items": count,
        "errors": sum(1 for row in rows if row["error"]),
        "pass_rate": round(sum(1 for row in rows if row["passed"]) / count, 4) if count else None,
        "evaluators": {
            name: {
                "kind": e["kind"],
                "mean": round(sum(e["scores"]) / len(e["scores"]), 4),
                "pass_rate": round(e["passed"] / len(e["scores"]), 4),
            }
            for name, e in evaluators.items()
        },
        "cost": float(cost) if rows else 0.0,
        "unpriced": sum(1 for row in rows if row["cost"] is None and not row["error"]),
        "priced": sum(1 for row in rows if row["cost"] is not None),
        "input_tokens": sum(row["input_tokens"] or 0 for row in rows),
        "output_tokens": sum(row["output_tokens"] or 0 for row in rows),
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
    }
