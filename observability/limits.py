"""Budgets against recorded spend: what each budget's scope spent this period according to the database (hourly
rollups where they fit, raw records for the rest), the threshold alerts that spend crossed (BudgetEvent, once per
period), and the periodic reconciliation that compares the database with the limits engine's counters.

The engine's side is two hooks left for it to fill: `reserved_now` (what in-flight requests hold) and
`counter_spend` (what its counters say a budget spent)."""

from __future__ import annotations

import datetime
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from proxy.limits import Counter
from proxy.limits.stage import budget_counter, current_period
from tenancy.models import Budget, BudgetEvent, BudgetEventKind, LimitScope, Organization
from tenancy.periods import period_bounds
from tenancy.selectors import BudgetConfig, budget_config, limits_for_org

from .models import RecordRollup, RequestRecord

log = logging.getLogger(__name__)

ZERO = Decimal(0)
_HOUR = datetime.timedelta(hours=1)
# Drift below this (USD) is rounding and timing, not worth a warning.
DRIFT_TOLERANCE = Decimal("0.01")
# The rollup dimension that sums each scope, and the value it is keyed by (str of the id, or the user_id).
_ROLLUP_DIMENSION = {LimitScope.ORG: "all", LimitScope.APP: "app", LimitScope.KEY: "key", LimitScope.USER: "user"}


@dataclass
class Spend:
    """A budget's spend in its current period [start, end). For an app's per-user default, `by_user` holds
    each user's spend and `total` the highest of them (the user closest to the limit)."""

    start: datetime.datetime
    end: datetime.datetime
    total: Decimal = ZERO
    by_user: dict[str, Decimal] | None = None
    top_user: str = ""


def _floor_hour(moment: datetime.datetime) -> datetime.datetime:
    moment = moment.astimezone(datetime.UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime.datetime) -> datetime.datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + _HOUR


def _record_filter(budget: BudgetConfig) -> Q:
    scope = budget.scope
    if scope.kind == LimitScope.ORG:
        return Q()
    if scope.kind == LimitScope.TEAM:
        return Q(team_id=scope.id)
    if scope.kind == LimitScope.APP:
        return Q(app_id=scope.id)
    if scope.kind == LimitScope.KEY:
        return Q(key_id=scope.id)
    found = Q(app_id=scope.app_id) if scope.app_id is not None else Q()
    return found & (Q(user_id=scope.user_id) if scope.user_id else ~Q(user_id=""))


def _rollup_key(budget: BudgetConfig) -> tuple[str, str] | None:
    """The rollup dimension and value that sum exactly this budget's scope, or None (teams, users in one app)."""
    scope = budget.scope
    if scope.kind == LimitScope.USER:
        return ("user", scope.user_id) if scope.app_id is None and scope.user_id else None
    dimension = _ROLLUP_DIMENSION.get(scope.kind)
    if dimension is None:
        return None
    return dimension, "" if scope.kind == LimitScope.ORG else str(scope.id)


def _raw_sum(org_id: int, budget: BudgetConfig, start, end, *, per_user: bool = False):
    rows = RequestRecord.objects.filter(
        _record_filter(budget), org_id=org_id, created_at__gte=start, created_at__lt=end, cost_total__isnull=False
    )
    if per_user:
        return {u: c for u, c in rows.values("user_id").annotate(c=Sum("cost_total")).values_list("user_id", "c")}
    return rows.aggregate(c=Sum("cost_total"))["c"] or ZERO


def budget_spend(org_id: int, budget: BudgetConfig, tz_name: str, now: datetime.datetime | None = None) -> Spend:
    """What `budget`'s scope spent in its period holding `now`, from the database: priced records' cost (a failed
    request that was billed counts; an unpriced one adds nothing). Whole UTC hours inside the period come from
    the hourly rollups where one dimension sums the scope; the edges (zones off the hour) and the scopes no
    rollup sums (teams, users within one app) from the records."""
    now = now or timezone.now()
    start, end = period_bounds(budget.period, tz_name, now)
    spend = Spend(start=start, end=end)
    if budget.scope.is_user_default:
        spend.by_user = _raw_sum(org_id, budget, start, end, per_user=True)
        if spend.by_user:
            spend.top_user, spend.total = max(spend.by_user.items(), key=lambda item: item[1])
        return spend
    key = _rollup_key(budget)
    if key is None:
        spend.total = _raw_sum(org_id, budget, start, end)
        return spend
    first, last = _ceil_hour(start), _floor_hour(end)
    if first >= last:
        spend.total = _raw_sum(org_id, budget, start, end)
        return spend
    dimension, value = key
    rolled = RecordRollup.objects.filter(
        org_id=org_id, dimension=dimension, value=value, bucket__gte=first, bucket__lt=last
    ).aggregate(c=Sum("cost"))["c"]
    edges = ZERO
    if start < first:
        edges += _raw_sum(org_id, budget, start, first)
    if last < end:
        edges += _raw_sum(org_id, budget, last, end)
    spend.total = (rolled or ZERO) + edges
    return spend


def spend_for_org(org_id: int, now: datetime.datetime | None = None) -> dict[int, Spend]:
    """Each enabled budget of the org with its spend this period, by budget id."""
    config = limits_for_org(org_id)
    now = now or timezone.now()
    return {b.id: budget_spend(org_id, b, config.timezone, now) for b in config.budgets}


def spend_by_budget(org_id: int, now: datetime.datetime | None = None) -> dict[int, Decimal]:
    """Each enabled budget's spend in its current period, from the database, by budget id (an app's per-user
    default: its highest user's)."""
    return {budget_id: spend.total for budget_id, spend in spend_for_org(org_id, now).items()}


# --- the engine's side (hooks) -------------------------------------------------------------------------------


def _counters(org_id: int, tz_name: str, budgets: list[BudgetConfig], user_id: str = "") -> dict[int, Counter]:
    """The limits engine's spend counter of each hard budget (proxy/limits/stage.py names them)."""
    now = time.time()
    return {
        budget.id: budget_counter(org_id, budget, user_id, current_period(budget.period, tz_name, now))
        for budget in budgets
        if budget.hard and (user_id or not budget.scope.is_user_default)
    }


def _usage(counters: dict[int, Counter]) -> dict[int, Any]:
    """Each counter as the engine has it now (this process's memory, or Redis), {} when it cannot be read."""
    from proxy.relay import gateway

    if not counters:
        return {}
    try:
        usage = gateway().limiter.snapshot(counters.values())
    except Exception as exc:  # noqa: BLE001  (the page and the reconciliation go on without the counters)
        log.warning("The budgets' counters could not be read: %s", exc)
        return {}
    return {budget_id: usage.get(counter.key) for budget_id, counter in counters.items()}


def reserved_now(org: Organization, budgets) -> dict[int, Decimal]:
    """What requests in flight hold against each budget right now (the limits engine's reservations), by budget
    id (zero for soft budgets, which reserve nothing, and when the counters cannot be read)."""
    configs = [budget_config(budget) for budget in budgets]
    usage = _usage(_counters(org.pk, org.timezone, configs))
    return {
        budget.id: Decimal(str(round(usage[budget.id].reserved, 6))) if usage.get(budget.id) else ZERO
        for budget in budgets
    }


def counter_spend(org_id: int, tz_name: str, budget: BudgetConfig, user_id: str = "") -> Decimal | None:
    """What the limits engine's counter says `budget` (for a per-user default: `user_id`) spent this period, or
    None when unknown (a soft budget, which is not counted; a counter not in use here; Redis away)."""
    usage = _usage(_counters(org_id, tz_name, [budget], user_id)).get(budget.id)
    if usage is None or not (usage.used or usage.reserved):
        return None  # a counter no request has touched yet (seeded from the database at first use)
    return Decimal(str(round(usage.used, 6)))


def compare(org_id: int, tz_name: str, budget: BudgetConfig, db_spend: Decimal, user_id: str = "") -> Decimal | None:
    """Counter minus database for one budget (and user), logged when past DRIFT_TOLERANCE; None when the counter
    is unknown."""
    counted = counter_spend(org_id, tz_name, budget, user_id)
    if counted is None:
        return None
    drift = counted - db_spend
    if abs(drift) > DRIFT_TOLERANCE:
        who = f" for user {user_id!r}" if user_id else ""
        log.warning(
            "Budget %s%s: the limits counter says $%s, recorded spend $%s (drift $%s)",
            budget.id,
            who,
            counted,
            db_spend,
            drift,
        )
    return drift


# --- alerts ---------------------------------------------------------------------------------------------------


def crossed(budget: BudgetConfig, spend: Decimal) -> list[int]:
    """The thresholds (percent of the amount) that `spend` has reached."""
    return [t for t in budget.thresholds if spend * 100 >= budget.amount_usd * t]


def record_events(org_id: int, budget: BudgetConfig, spend: Spend) -> list[BudgetEvent]:
    """A BudgetEvent for every threshold the period's spend has reached and that has none yet (per user for an
    app's per-user default). Safe to run concurrently: the unique constraint keeps one per period."""
    subjects = spend.by_user.items() if spend.by_user is not None else [("", spend.total)]
    wanted = [(user, amount, t) for user, amount in subjects for t in crossed(budget, amount)]
    if not wanted:
        return []
    have = set(
        BudgetEvent.objects.filter(budget_id=budget.id, period_start=spend.start).values_list("user_id", "threshold")
    )
    made = []
    for user, amount, threshold in wanted:
        if (user, threshold) in have:
            continue
        kind = BudgetEventKind.REACHED if threshold >= 100 else BudgetEventKind.THRESHOLD
        try:
            with transaction.atomic():
                made.append(
                    BudgetEvent.objects.create(
                        budget_id=budget.id,
                        org_id=org_id,
                        kind=kind,
                        threshold=threshold,
                        user_id=user,
                        period_start=spend.start,
                        spend=amount,
                        amount_usd=budget.amount_usd,
                    )
                )
        except IntegrityError:
            continue  # another process recorded it first
    return made


# --- reconciliation ---------------------------------------------------------------------------------------------


@dataclass
class Reconciled:
    budgets: int = 0
    events: int = 0
    drifted: list[tuple[int, str, Decimal]] = field(default_factory=list)  # (budget id, user, drift) past tolerance

    def as_dict(self) -> dict:
        return {"budgets": self.budgets, "events": self.events, "drifted": len(self.drifted)}


def reconcile_org(org_id: int, now: datetime.datetime | None = None) -> Reconciled:
    """Recompute each enabled budget's spend from the database, compare it with the engine's counters, and record
    the threshold events that spend crossed (so soft budgets alert even where no engine counts)."""
    config = limits_for_org(org_id)
    now = now or timezone.now()
    done = Reconciled()
    for budget in config.budgets:
        spend = budget_spend(org_id, budget, config.timezone, now)
        done.budgets += 1
        for user, amount in (spend.by_user or {}).items() if spend.by_user is not None else [("", spend.total)]:
            drift = compare(org_id, config.timezone, budget, amount, user)
            if drift is not None and abs(drift) > DRIFT_TOLERANCE:
                done.drifted.append((budget.id, user, drift))
        done.events += len(record_events(org_id, budget, spend))
    return done


def reconcile_budgets(now: datetime.datetime | None = None) -> dict[str, int]:
    """Every active org with an enabled budget, reconciled. Idempotent: safe to run twice or concurrently."""
    total = Reconciled()
    org_ids = (
        Budget.objects.filter(enabled=True, org__is_active=True).values_list("org_id", flat=True).distinct().order_by()
    )
    for org_id in list(org_ids):
        try:
            done = reconcile_org(org_id, now)
        except Exception:  # one org's trouble must not stop the others'
            log.exception("Reconciling the budgets of org %s failed", org_id)
            continue
        total.budgets += done.budgets
        total.events += done.events
        total.drifted += done.drifted
    return total.as_dict()


_last_run = -float("inf")
_lock = threading.Lock()


def maybe_reconcile() -> dict[str, int] | None:
    """Reconcile if INGATE_BUDGET_RECONCILE_SECONDS have passed since this process last did: for the embedded
    mode, where no celery beat runs (call it from periodic work such as the record writer's round)."""
    global _last_run
    with _lock:
        if time.monotonic() - _last_run < settings.INGATE_BUDGET_RECONCILE_SECONDS:
            return None
        _last_run = time.monotonic()
    return reconcile_budgets()
