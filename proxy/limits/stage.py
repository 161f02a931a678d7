"""Budgets and rate limits on the request path: the `Limits` stage reserves a request's worst case on every counter
that applies to it (one call to the limiter: one Redis round trip at most) before it goes upstream, refuses it in
the provider's own 429 shape when something does not fit, and settles to what the request really used once its
record is complete (in the background: the response never waits for it).

The worst case: input tokens counted by OpenAI's tokenizer for a small OpenAI-format request to an OpenAI model,
else bounded by the body's size (INGATE_LIMITS_BYTES_PER_TOKEN bytes per token; proxy/limits/tokens.py says when
which), output by the request's own max tokens or INGATE_LIMITS_DEFAULT_OUTPUT_TOKENS, both at the model's price
(the org's price overrides included). A model without a price is refused under a hard budget (403
`budget_unpriced_model`): a request whose cost cannot be known is never free. An org with no budgets and no rate
limits costs one attribute check here. A reservation nobody settles (a killed gateway) is released after
INGATE_LIMITS_RESERVATION_TTL seconds; rate limits count over INGATE_LIMITS_RATE_WINDOW seconds."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from django.conf import settings

from tenancy.periods import period_bounds

from .. import formats
from ..attribution import end_user
from ..cache import LoadingCache
from ..codes import ErrorCode
from ..errors import ProxyError
from ..providers import OPENAI_FORMAT_ENDPOINTS
from ..records import Outcome
from ..stages import Stage
from .counters import CONCURRENCY, REQUESTS, SPEND, TOKENS, UNAVAILABLE, Counter, Reservation
from .tokens import input_tokens

if TYPE_CHECKING:
    from ..exchange import Exchange

log = logging.getLogger(__name__)

# Requests no provider bills: they count against request and concurrency limits only.
_READS = frozenset({"GET", "HEAD", "DELETE"})  # model lists, stored responses and batches fetched or deleted
_FREE_ENDPOINTS = frozenset({"models", "messages.count_tokens", "countTokens", "moderations", "tags", "show", "ps"})
# Outcomes of a stream that ended before its provider's final usage.
_CUT = frozenset({Outcome.CLIENT_DISCONNECT, Outcome.UPSTREAM_CUT, Outcome.UPSTREAM_TIMEOUT})
_NO_RETRY = (b"x-should-retry", b"false")  # SDKs and Claude Code stop at once instead of retrying a 429
# Where a request says how much it may generate, per wire format.
_OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def _max_output(parsed: dict | None) -> int | None:
    if not isinstance(parsed, dict):
        return None
    for name in _OUTPUT_FIELDS:
        value = parsed.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    config = parsed.get("generationConfig") or parsed.get("generation_config")  # Gemini
    if isinstance(config, dict):
        value = config.get("maxOutputTokens") or config.get("max_output_tokens")
        if isinstance(value, int) and value > 0:
            return value
    options = parsed.get("options")  # Ollama
    if isinstance(options, dict) and isinstance(options.get("num_predict"), int) and options["num_predict"] > 0:
        return options["num_predict"]
    return None


class _Plan(NamedTuple):
    """What applies to one key and end user in one period, made once (Limits._plan)."""

    config: Any  # the org's limits config it was made from (a new one means a new plan)
    until: float  # epoch seconds: the first budget period's end
    budgets: tuple  # the hard budgets (tenancy.selectors.BudgetConfig)
    counters: tuple[Counter, ...]  # theirs and the rate limits', in that order
    count_cache_reads: bool
    seed: tuple[tuple[int, Counter], ...]  # budget counters the database's spend seeds
    counts_tokens: bool  # a budget or a token limit: the request's tokens are needed
    unbilled: tuple[Counter, ...]  # the request and concurrency counters, for requests no provider bills


class Limits(Stage):
    """Reserves before, settles after; refuses with 429 (or 403 for an unpriced model under a hard budget)."""

    def __init__(self, app):
        super().__init__(app)
        self._periods: dict[tuple[str, str], tuple[str, float]] = {}  # (period, zone) -> (start label, end epoch)
        # Orgs (and periods) whose budget counters were seeded from the database's recorded spend in this process.
        self._seeded: LoadingCache[Any, bool] = LoadingCache(self._load_seed, ttl=86400.0, miss_ttl=60.0)
        self._to_seed: dict[Any, tuple[tuple[int, Counter], ...]] = {}
        sink = app.sink
        self._unit_prices = getattr(sink, "unit_prices", None)
        self._budget_spend = getattr(sink, "budget_spend", None)
        self._prices: LoadingCache[tuple[int, str, str], Any] = LoadingCache(
            self._load_prices, ttl=settings.INGATE_KEY_CACHE_TTL, miss_ttl=settings.INGATE_KEY_CACHE_TTL
        )
        self._plans: dict[tuple, _Plan] = {}  # (org, team, app, key, end user) -> what applies to them
        self._ttl = settings.INGATE_LIMITS_RESERVATION_TTL or settings.INGATE_UPSTREAM_READ_TIMEOUT + 60
        self._window = settings.INGATE_LIMITS_RATE_WINDOW
        self._bytes_per_token = settings.INGATE_LIMITS_BYTES_PER_TOKEN
        self._tokenize_bytes = settings.INGATE_LIMITS_TOKENIZE_BYTES

    # --- the way in ------------------------------------------------------------------------------------------

    async def request(self, ex: Exchange) -> None:
        config = ex.org.limits
        if config is None or config.empty:
            return
        key = ex.principal
        parsed = await ex.json()
        user = end_user(
            ex.incoming.ingate.get(b"x-ingate-user-id", b"").decode("latin-1"), parsed if parsed is not None else {}
        )
        now = time.time()
        who = (config.org_id, key.team_id, key.app_id, key.id, user)
        plan = self._plans.get(who)
        if plan is None or plan.config is not config or now >= plan.until:
            plan = self._plan(config, who, now)
        budgets, counters, count_cache_reads, seed, counts_tokens = plan[2:7]
        if ex.scope["method"] in _READS or ex.route.endpoint in _FREE_ENDPOINTS:
            # Not billed (a model list, a token count, a stored answer fetched): requests and slots count, spend
            # and tokens do not, and no price is needed.
            budgets, counters, counts_tokens = (), plan.unbilled, False
        if not counters:
            return
        input_tokens = output_tokens = 0
        if counts_tokens:  # a budget or a token limit: requests and concurrency limits alone need no count
            body = await ex.body()
            input_tokens = self._input_tokens(ex, len(body), parsed)
            output_tokens = _max_output(parsed) or settings.INGATE_LIMITS_DEFAULT_OUTPUT_TOKENS
        cost, prices = 0.0, None
        if budgets:
            await self._seed(config.org_id, seed)
            cost, prices = await self._worst_cost(ex, input_tokens, output_tokens)
        reservation = await self.app.limiter.reserve(
            ex.record.request_id,
            counters,
            cost=cost,
            tokens=input_tokens + output_tokens,
            ttl=self._ttl,
        )
        if not reservation.granted:
            raise self._refusal(reservation)
        ex.limits = (reservation, count_cache_reads, prices, input_tokens, output_tokens)

    def _input_tokens(self, ex: Exchange, size: int, parsed) -> int:
        """The request's input at most: OpenAI's tokenizer over a small OpenAI-format body for OpenAI models, else
        the bytes bound (proxy/limits/tokens.py)."""
        if ex.route.endpoint not in OPENAI_FORMAT_ENDPOINTS or size > self._tokenize_bytes:
            return math.ceil(size / self._bytes_per_token)
        if ex.routed is not None:
            models = [target.model for target in ex.routed.targets]
        else:
            models = [ex.record.model or ex.route.model]
        return input_tokens(
            size, parsed, models, bytes_per_token=self._bytes_per_token, tokenize_bytes=self._tokenize_bytes
        )

    def _plan(self, config, who: tuple, now: float) -> _Plan:
        """What applies to one key and end user, as counters: made once per org config, key, user and period."""
        _, team_id, app_id, key_id, user = who
        scope = {"team_id": team_id, "app_id": app_id, "key_id": key_id, "user_id": user}
        budgets = tuple(b for b in config.budgets_for(**scope) if b.hard)
        rates = config.rate_limits_for(**scope)
        counters: list[Counter] = []
        until = math.inf
        for budget in budgets:
            counter = self._budget_counter(config.org_id, config.timezone, budget, user, now)
            counters.append(counter)
            if counter.expires_at is not None:
                until = min(until, counter.expires_at)
        count_cache_reads = False
        for rate in rates:
            counters += self._rate_counters(config.org_id, rate, user)
            count_cache_reads = count_cache_reads or rate.count_cache_reads
        # The hard budgets' counters whose spend the database can tell (per-user counters start at what users spend).
        seed = tuple((b.id, c) for b, c in zip(budgets, counters, strict=False) if not b.scope.is_user_default)
        counts_tokens = bool(budgets) or any(counter.kind == TOKENS for counter in counters)
        unbilled = tuple(c for c in counters if c.kind in (REQUESTS, CONCURRENCY))
        plan = _Plan(config, until, budgets, tuple(counters), count_cache_reads, seed, counts_tokens, unbilled)
        if len(self._plans) >= 100_000:  # end users are unbounded: start over rather than grow without end
            self._plans.clear()
        self._plans[who] = plan
        return plan

    def _budget_counter(self, org_id: int, zone: str, budget, user: str, now: float) -> Counter:
        return budget_counter(org_id, budget, user, self._period(budget.period, zone, now))

    def _rate_counters(self, org_id: int, rate, user: str) -> list[Counter]:
        who = f":u:{user}" if rate.scope.is_user_default else ""
        window, found = self._window, []
        # Another window is another counter (Redis keeps a window's buckets by their width).
        base = f"o{org_id}:r{rate.id}{who}" + ("" if window == 60.0 else f":w{window:g}")
        share = window / 60.0  # per-minute limits, counted over INGATE_LIMITS_RATE_WINDOW seconds
        if rate.requests_per_minute:
            label = _label(rate, "requests-per-minute limit", user)
            limit = rate.requests_per_minute * share
            found.append(Counter(f"{base}:rpm", REQUESTS, limit, window, None, rate.fail_open, label))
        if rate.tokens_per_minute:
            label = _label(rate, "tokens-per-minute limit", user)
            limit = rate.tokens_per_minute * share
            found.append(Counter(f"{base}:tpm", TOKENS, limit, window, None, rate.fail_open, label))
        if rate.concurrent:
            label = _label(rate, "concurrency limit", user)
            found.append(Counter(f"{base}:conc", CONCURRENCY, rate.concurrent, 60.0, None, rate.fail_open, label))
        return found

    def _period(self, period: str, zone: str, now: float) -> tuple[str, float | None]:
        known = self._periods.get((period, zone))
        if known is not None and now < known[1]:
            return known
        found = current_period(period, zone, now)
        if found[1] is not None:
            self._periods[(period, zone)] = found
        return found

    async def _seed(self, org_id: int, seed: tuple[tuple[int, Counter], ...]) -> None:
        """Once per set of budget counters (an org's, a period's) in this process: the counters start from the spend
        the database recorded (a budget created mid-period, a restarted embedded gateway, a Redis that lost its
        data); the larger of the two is kept, so seeding never lowers a count. Concurrent first requests share one
        load. `seed`: (budget id, its counter) pairs, made once per plan."""
        if self._budget_spend is None or not seed:
            return
        key = (org_id, tuple(counter.key for _, counter in seed))
        self._to_seed.setdefault(key, seed)
        await self._seeded.get(key)

    async def _load_seed(self, key: tuple[int, tuple[str, ...]]) -> bool | None:
        org_id = key[0]
        seed = self._to_seed.pop(key, ())
        try:
            spent = await self.app.db.run(self._budget_spend, org_id)
            totals = [(counter, float(spent.get(budget_id, 0.0))) for budget_id, counter in seed]
            await asyncio.get_running_loop().run_in_executor(None, self.app.limiter.load, totals)
        except Exception as exc:  # noqa: BLE001  (the counters still count; the reconciliation reports drift)
            log.warning("Could not seed the budget counters of org %s from the database: %s", org_id, exc)
            return None  # a miss: tried again after the cache's miss time
        return True

    async def _worst_cost(self, ex: Exchange, input_tokens: int, output_tokens: int) -> tuple[float, Any]:
        """The request's worst case in USD at the most expensive model it may reach (a route's targets)."""
        if ex.routed is not None:
            models = [(t.provider, t.model) for t in ex.routed.targets]
        else:
            models = [(ex.route.provider, ex.record.model or ex.route.model)]
        worst, known = 0.0, {}
        for provider, model in models:
            prices = await self._prices.get((ex.principal.org_id, provider, model)) if model else None
            if prices is None:
                raise ProxyError(
                    403,
                    ErrorCode.BUDGET_UNPRICED_MODEL,
                    f"{provider}/{model or '(no model named)'} has no price, and a hard budget applies to this "
                    "request: a request whose cost cannot be known is refused. Add a price override for the model "
                    "to the organization (admin or API: price-overrides), or make the budget soft.",
                )
            known[(provider, model)] = prices
            worst = max(worst, input_tokens * prices[0] + output_tokens * prices[1])
        return worst, known

    async def _load_prices(self, key: tuple[int, str, str]):
        if self._unit_prices is None:
            return None
        return await self.app.db.run(self._unit_prices, *key)

    def _refusal(self, reservation: Reservation) -> ProxyError:
        refusal = reservation.refusal
        counter = refusal.counter
        if refusal.reason == UNAVAILABLE:
            return ProxyError(503, ErrorCode.LIMITS_UNAVAILABLE, refusal.message, retry_after=5.0)
        code = ErrorCode.BUDGET_EXCEEDED if counter.kind == SPEND else ErrorCode.RATE_LIMITED
        headers = []
        if counter.kind == SPEND or refusal.retry_after is None:
            headers.append(_NO_RETRY)  # waiting will not help (or not soon): stop rather than retry
        if counter.kind == REQUESTS:
            headers += _rate_headers("requests", counter.limit, 0, refusal.retry_after)
        elif counter.kind == TOKENS:
            headers += _rate_headers("tokens", counter.limit, 0, refusal.retry_after)
        return ProxyError(429, code, refusal.message, retry_after=refusal.retry_after, headers=headers)

    # --- the way out -----------------------------------------------------------------------------------------

    def response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]):
        limits = ex.limits
        if limits is None:
            return None
        reservation = limits[0]
        budget_left = None
        for counter in reservation.counters:
            standing = reservation.standing.get(counter.key)
            if standing is None:
                continue
            if counter.kind == SPEND:
                budget_left = standing.remaining if budget_left is None else min(budget_left, standing.remaining)
            elif counter.kind == REQUESTS:
                headers += _rate_headers("requests", standing.limit, standing.remaining, standing.reset)
            elif counter.kind == TOKENS:
                headers += _rate_headers("tokens", standing.limit, standing.remaining, standing.reset)
        if budget_left is not None:
            headers.append((b"x-ingate-budget-remaining", f"{max(budget_left, 0.0):.6f}".encode()))
        return None

    def done(self, ex: Exchange) -> None:
        """The request is over (its record complete): settle its reservation to what it used. Priced here at the
        model's unit prices (cached; cache reads and writes at their own rates), so settling takes no thread hop;
        the record's exact cost (tiers, tool fees) is the database's, and the reconciliation reports any drift."""
        limits = ex.limits
        if limits is None:
            return
        reservation, count_cache_reads, prices, input_tokens, output_tokens = limits
        ex.limits = None
        record = ex.record
        tokens = formats.tokens(record.provider, record.usage)
        used, cost = 0, 0.0
        if 200 <= record.status < 300 and (tokens is None or record.outcome in _CUT):
            # Answered, but the usage did not come or not all of it (a stream the client left before its usage
            # chunk, or after Anthropic's opening count; a provider that reports none): never free. The input as
            # reserved, the output at most what was relayed (bytes bound) and at most what was reserved.
            relayed = min(output_tokens, math.ceil(record.response_bytes / self._bytes_per_token))
            if tokens is None:
                tokens = formats.Tokens(input=input_tokens, output=relayed)
            else:
                tokens = dataclasses.replace(tokens, output=max(tokens.output, relayed))
        if tokens is not None:
            used = tokens.input + tokens.output - (0 if count_cache_reads else tokens.cache_read)
            # The model that answered (a route's target), else the dearest of those reserved for.
            prices = prices and (prices.get((record.provider, record.model)) or max(prices.values()))
            if prices:
                fresh = max(tokens.input - tokens.cache_read - tokens.cache_write, 0)
                cost = (
                    fresh * prices[0]
                    + tokens.output * prices[1]
                    + tokens.cache_read * prices[2]
                    + tokens.cache_write * prices[3]
                )
        self.app.limiter.settle(reservation, cost=cost, tokens=max(used, 0))


def current_period(period: str, zone: str, now: float) -> tuple[str, float | None]:
    """(the period's start as it names counters, its end in epoch seconds or None for a total budget)."""
    start, end = period_bounds(period, zone, datetime.datetime.fromtimestamp(now, datetime.UTC))
    return start.strftime("%Y%m%dT%H%M"), end.timestamp() if end.year < 9999 else None


def budget_counter(org_id: int, budget, user: str, period: tuple[str, float | None]) -> Counter:
    """The spend counter of a hard budget (tenancy.selectors.BudgetConfig) for a period (`current_period`): one
    per user for an app's per-user default. The pages and the reconciliation read the same counters."""
    start, end = period
    who = f":u:{user}" if budget.scope.is_user_default else ""
    return Counter(
        key=f"o{org_id}:b{budget.id}{who}:{start}",
        kind=SPEND,
        limit=float(budget.amount_usd),
        expires_at=end,
        fail_open=budget.fail_open,
        label=_label(budget, f"{budget.period} budget" if budget.period != "total" else "budget", user),
    )


def _label(item, what: str, user: str) -> str:
    scope = item.scope
    owner = {
        "org": "the organization",
        "team": f"team {scope.id}",
        "app": f"app {scope.id}",
        "key": f"key {scope.id}",
    }.get(scope.kind, f"user '{user}'")
    named = f" '{item.name}'" if item.name else ""
    return f"The {what}{named} of {owner}"


def _rate_headers(kind: str, limit: float, remaining: float, reset: float | None) -> list[tuple[bytes, bytes]]:
    found = [
        (f"x-ratelimit-limit-{kind}".encode(), str(int(limit)).encode()),
        (f"x-ratelimit-remaining-{kind}".encode(), str(max(int(remaining), 0)).encode()),
    ]
    if reset is not None:
        found.append((f"x-ratelimit-reset-{kind}".encode(), f"{max(reset, 0.0):.3f}s".encode()))
    return found
