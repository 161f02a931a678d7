"""The retry policy of routing: which failures move on, how long a retry waits (the upstream's retry-after
headers, else jittered backoff), and the order of attempts over a route's targets within its budget and
deadline, around open circuits."""

import asyncio
import email.utils
import random

import pytest

from proxy.routing import (
    DEFAULT_RETRY_STATUSES,
    Exhausted,
    Health,
    Plan,
    Target,
    counts_against_health,
    fits,
    retry_delay,
    should_move_on,
)
from proxy.routing.retry import CIRCUIT_OPEN, DEADLINE, NO_ATTEMPTS_LEFT, TARGETS_EXHAUSTED


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


OPENAI_1 = Target("openai", "gpt-4o", "key-1")
OPENAI_2 = Target("openai", "gpt-4o", "key-2")
ANTHROPIC = Target("anthropic", "claude-sonnet-4", "env")
AZURE = Target("azure", "gpt-4o", "env")


def plan(targets, clock=None, health=None, **options):
    clock = clock or Clock()
    health = health or Health(clock=clock)
    return Plan(7, targets, health=health, clock=clock, rng=random.Random(1), **options)


def providers(p: Plan, fail_with=503, limit=20) -> list[str]:
    """Fail every attempt with `fail_with` and list the targets in the order they were tried."""
    tried = []
    for _ in range(limit):
        try:
            attempt = p.next()
        except Exhausted:
            return tried
        tried.append(f"{attempt.target.provider}/{attempt.target.credential}")
        p.failed(attempt, status=fail_with)
    raise AssertionError("the plan never ended")


# --- when to move on --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
def test_overload_and_server_errors_move_on_by_default(status):
    assert should_move_on(status, None, frozenset())


@pytest.mark.parametrize("status", [200, 201, 400, 401, 403, 404, 413, 422])
def test_success_and_client_errors_are_relayed_as_they_are_by_default(status):
    assert not should_move_on(status, None, frozenset())


@pytest.mark.parametrize("kind", ["connect", "timeout", "first_byte_timeout", "cut"])
def test_connection_failures_move_on(kind):
    assert should_move_on(None, kind, frozenset())


def test_a_route_can_opt_in_to_moving_on_from_a_context_length_400_or_a_pooled_keys_401():
    assert should_move_on(400, None, frozenset({400, 401}))
    assert should_move_on(401, None, frozenset({400, 401}))
    assert not should_move_on(403, None, frozenset({400, 401}))


def test_an_opt_in_list_cannot_make_a_success_move_on():
    assert not should_move_on(200, None, frozenset({200}))


def test_an_unknown_error_kind_is_refused_loudly_rather_than_silently_relayed():
    with pytest.raises(ValueError, match="Unknown error kind 'reset'"):
        should_move_on(None, "reset", frozenset())


def test_an_opted_in_client_error_says_nothing_about_the_targets_health():
    assert not counts_against_health(400, None)
    assert all(counts_against_health(status, None) for status in DEFAULT_RETRY_STATUSES)
    assert counts_against_health(None, "first_byte_timeout")


# --- how long to wait ----------------------------------------------------------------------------------------


def test_retry_after_in_seconds_is_honoured():
    assert retry_delay(1, [(b"retry-after", b"3")], base=0.5, cap=30) == 3.0


def test_retry_after_ms_is_honoured_before_retry_after():
    headers = [(b"retry-after", b"3"), (b"retry-after-ms", b"1500")]
    assert retry_delay(1, headers, base=0.5, cap=30) == 1.5


def test_azures_x_ms_retry_after_ms_is_honoured():
    assert retry_delay(1, [(b"x-ms-retry-after-ms", b"250")], base=0.5, cap=30) == 0.25


def test_header_names_match_whatever_their_case():
    assert retry_delay(1, [(b"Retry-After", b"2")], base=0.5, cap=30) == 2.0


def test_retry_after_as_an_http_date_waits_until_that_date():
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True).encode()
    assert retry_delay(1, [(b"retry-after", date)], base=0.5, cap=30, now=now) == pytest.approx(12)


def test_retry_after_as_a_past_http_date_retries_at_once():
    now = 1_700_000_000.0
    date = email.utils.formatdate(now - 60, usegmt=True).encode()
    assert retry_delay(1, [(b"retry-after", date)], base=0.5, cap=30, now=now) == 0.0


def test_a_header_asking_for_longer_than_the_cap_is_capped():
    assert retry_delay(1, [(b"retry-after", b"120")], base=0.5, cap=8) == 8.0
    assert retry_delay(1, [(b"retry-after-ms", b"90000")], base=0.5, cap=8) == 8.0


@pytest.mark.parametrize("value", [b"soon", b"-5", b"nan", b"inf", b""])
def test_an_unusable_retry_after_falls_back_to_backoff(value):
    rng = random.Random(3)
    delays = [retry_delay(2, [(b"retry-after", value)], base=0.5, cap=30, rng=rng) for _ in range(200)]
    assert all(0 <= delay <= 1.0 for delay in delays) and len(set(delays)) > 100


def test_backoff_is_full_jitter_between_zero_and_the_exponential_ceiling():
    rng = random.Random(5)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]:
        delays = [retry_delay(attempt, None, base=0.5, cap=30, rng=rng) for _ in range(2000)]
        assert all(0 <= delay <= ceiling for delay in delays)
        # spread over the whole range, not bunched: a quarter of the draws in each quarter, roughly
        quarters = [sum(1 for d in delays if q * ceiling / 4 <= d < (q + 1) * ceiling / 4) for q in range(4)]
        assert all(380 < count < 620 for count in quarters), quarters


def test_backoff_never_exceeds_the_cap_however_many_retries():
    rng = random.Random(6)
    delays = [retry_delay(attempt, None, base=0.5, cap=8, rng=rng) for attempt in range(1, 200)]
    assert max(delays) <= 8 and max(delays) > 4


def test_a_wait_that_does_not_end_before_the_deadline_does_not_fit():
    assert fits(1.0, 2.5)
    assert not fits(3.0, 2.5)
    assert not fits(2.5, 2.5)


# --- the plan: order ------------------------------------------------------------------------------------------


def test_fallback_tries_targets_in_the_routes_order():
    assert providers(plan([OPENAI_1, ANTHROPIC, AZURE])) == ["openai/key-1", "anthropic/env", "azure/env"]


def test_fallback_retries_a_target_with_backoff_before_moving_on():
    clock = Clock()
    p = plan([OPENAI_1, ANTHROPIC], clock=clock, retries=2, base=0.5, cap=8)
    first = p.next()
    p.failed(first, status=503)
    second = p.next()
    assert (second.target, second.retry, second.number) == (OPENAI_1, 1, 2)
    assert 0 <= second.delay <= 0.5
    clock.now += second.delay
    p.failed(second, status=503)
    third = p.next()
    assert (third.target, third.retry) == (OPENAI_1, 2) and 0 <= third.delay <= 1.0
    clock.now += third.delay
    p.failed(third, status=503)
    assert p.next().target == ANTHROPIC


def test_a_retry_waits_what_the_upstream_asked_less_the_time_already_spent():
    clock = Clock()
    p = plan([OPENAI_1, OPENAI_2], clock=clock, retries=1)
    first = p.next()
    p.failed(first, status=429, headers=[(b"retry-after", b"4")])
    sibling = p.next()
    assert sibling.target == OPENAI_2 and sibling.delay == 0
    clock.now += 1.0
    p.failed(sibling, status=429)  # rate-limited too: back to key-1, which asked for 4 s, 1 s ago
    again = p.next()
    assert again.target == OPENAI_1 and again.delay == pytest.approx(3.0)


def test_when_every_target_failed_the_plan_ends_with_the_last_error_to_answer():
    p = plan([OPENAI_1, ANTHROPIC])
    for body in (b"first", b"second"):
        p.failed(p.next(), status=502, error=body)
    with pytest.raises(Exhausted) as ended:
        p.next()
    assert ended.value.reason == TARGETS_EXHAUSTED and ended.value.error == b"second" and ended.value.attempts == 2


def test_loadbalance_picks_the_first_target_by_weight():
    rng = random.Random(11)
    health = Health()
    targets = [Target("openai", "gpt-4o", "a", weight=3), Target("azure", "gpt-4o", "b", weight=1)]
    firsts = [
        Plan(7, targets, health=health, strategy="loadbalance", rng=rng).next().target.provider for _ in range(1000)
    ]
    assert 700 <= firsts.count("openai") <= 800  # 750 expected; ±50 is beyond four standard deviations


def test_loadbalance_never_picks_an_open_target_and_keeps_the_others_proportions():
    rng, clock = random.Random(12), Clock()
    health = Health(threshold=1, clock=clock)
    targets = [
        Target("openai", "gpt-4o", "down", weight=5),
        Target("openai", "gpt-4o", "a", weight=2),
        Target("azure", "gpt-4o", "b", weight=1),
    ]
    health.record_failure(targets[0].key(7), "connect")
    firsts = [
        Plan(7, targets, health=health, strategy="loadbalance", rng=rng, clock=clock).next().target.credential
        for _ in range(1000)
    ]
    assert "down" not in firsts
    assert 610 <= firsts.count("a") <= 720  # 2/3 expected


def test_loadbalance_falls_back_to_the_other_targets_after_a_failure():
    targets = [Target("openai", "gpt-4o", "a", weight=1), Target("azure", "gpt-4o", "b", weight=1)]
    assert sorted(providers(plan(targets, strategy="loadbalance"))) == ["azure/b", "openai/a"]


def test_a_zero_weight_target_is_only_a_standby():
    rng = random.Random(13)
    targets = [Target("openai", "gpt-4o", "standby", weight=0), Target("azure", "gpt-4o", "main", weight=1)]
    health = Health()
    firsts = {
        Plan(7, targets, health=health, strategy="loadbalance", rng=rng).next().target.credential for _ in range(200)
    }
    assert firsts == {"main"}


def test_lowest_latency_prefers_the_faster_target_and_still_explores():
    health, rng = Health(), random.Random(14)
    slow, fast = Target("openai", "gpt-4o", "slow"), Target("azure", "gpt-4o", "fast")
    for _ in range(5):
        health.record_success(slow.key(7), 900.0)
        health.record_success(fast.key(7), 150.0)
    firsts = [
        Plan(7, [slow, fast], health=health, strategy="lowest-latency", rng=rng).next().target.credential
        for _ in range(1000)
    ]
    # 5% explore, half of which lands on the slow one: ~25 of 1000
    assert 5 <= firsts.count("slow") <= 60


def test_lowest_latency_measures_a_target_it_has_no_timing_for_first():
    health = Health()
    known, new = Target("openai", "gpt-4o", "known"), Target("azure", "gpt-4o", "new")
    health.record_success(known.key(7), 100.0)
    p = Plan(7, [known, new], health=health, strategy="lowest-latency", rng=random.Random(15), explore=0)
    assert p.next().target == new


def test_lowest_latency_follows_a_target_that_became_slow():
    health = Health(ewma_alpha=0.5)
    a, b = Target("openai", "gpt-4o", "a"), Target("azure", "gpt-4o", "b")
    health.record_success(a.key(7), 100.0)
    health.record_success(b.key(7), 300.0)
    for _ in range(4):
        health.record_success(a.key(7), 2000.0)
    assert Plan(7, [a, b], health=health, strategy="lowest-latency", explore=0).next().target == b


# --- pooled keys ----------------------------------------------------------------------------------------------


def test_a_429_on_a_pooled_key_tries_the_providers_next_key_before_other_providers():
    assert providers(plan([OPENAI_1, ANTHROPIC, OPENAI_2]), fail_with=429) == [
        "openai/key-1",
        "openai/key-2",
        "anthropic/env",
    ]


def test_a_server_error_on_a_pooled_key_keeps_the_routes_order():
    assert providers(plan([OPENAI_1, ANTHROPIC, OPENAI_2]), fail_with=500) == [
        "openai/key-1",
        "anthropic/env",
        "openai/key-2",
    ]


def test_a_429_does_not_rotate_to_another_model_of_the_same_provider():
    other_model = Target("openai", "gpt-4o-mini", "key-2")
    assert providers(plan([OPENAI_1, ANTHROPIC, other_model]), fail_with=429) == [
        "openai/key-1",
        "anthropic/env",
        "openai/key-2",
    ]


def test_a_rate_limited_key_is_retried_after_its_siblings():
    tried = providers(plan([OPENAI_1, OPENAI_2, ANTHROPIC], retries=1, max_attempts=10), fail_with=429)
    assert tried[:3] == ["openai/key-1", "openai/key-2", "openai/key-1"]
    assert sorted(tried) == sorted(["openai/key-1", "openai/key-2", "anthropic/env"] * 2)


# --- budget and deadline --------------------------------------------------------------------------------------


def test_never_more_attempts_than_the_routes_budget():
    p = plan([OPENAI_1, ANTHROPIC, AZURE], retries=3, max_attempts=4)
    assert len(providers(p)) == 4
    with pytest.raises(Exhausted) as ended:
        p.next()
    assert ended.value.reason == NO_ATTEMPTS_LEFT


def test_no_attempt_starts_after_the_deadline():
    clock = Clock()
    p = plan([OPENAI_1, ANTHROPIC], clock=clock, deadline=10)
    first = p.next()
    assert first.timeout == 10
    clock.now += 10
    p.failed(first, error_kind="timeout")
    with pytest.raises(Exhausted) as ended:
        p.next()
    assert ended.value.reason == DEADLINE


def test_each_attempt_is_told_the_time_left_before_the_deadline():
    clock = Clock()
    p = plan([OPENAI_1, ANTHROPIC], clock=clock, deadline=10)
    first = p.next()
    clock.now += 6
    p.failed(first, error_kind="connect")
    assert p.next().timeout == pytest.approx(4)


def test_a_retry_after_beyond_the_deadline_gives_up_on_that_target_instead_of_sleeping():
    clock = Clock()
    p = plan([OPENAI_1, ANTHROPIC], clock=clock, retries=2, deadline=5, cap=60)
    first = p.next()
    p.failed(first, status=503, headers=[(b"retry-after", b"30")])
    second = p.next()
    assert second.target == ANTHROPIC and second.delay == 0


def test_a_retry_after_beyond_the_deadline_on_the_only_target_ends_the_plan_at_once():
    clock = Clock()
    p = plan([OPENAI_1], clock=clock, retries=2, deadline=5, cap=60)
    p.failed(p.next(), status=503, headers=[(b"retry-after", b"30")], error=b"busy")
    with pytest.raises(Exhausted) as ended:
        p.next()
    assert ended.value.reason == DEADLINE and ended.value.error == b"busy"


# --- around open circuits -------------------------------------------------------------------------------------


def test_an_open_target_is_skipped_for_the_next_one():
    clock = Clock()
    health = Health(threshold=1, clock=clock)
    health.record_failure(OPENAI_1.key(7), "connect")
    assert providers(plan([OPENAI_1, ANTHROPIC], clock=clock, health=health)) == ["anthropic/env"]


def test_a_target_whose_circuit_opens_mid_plan_gets_no_more_retries():
    clock = Clock()
    health = Health(threshold=2, clock=clock)
    p = plan([OPENAI_1, ANTHROPIC], clock=clock, health=health, retries=5)
    for _ in range(2):
        attempt = p.next()
        assert attempt.target == OPENAI_1
        health.record_failure(attempt.key, "status", status=503)
        p.failed(attempt, status=503)
        clock.now += attempt.delay + 1
    assert p.next().target == ANTHROPIC


def test_a_single_target_route_fails_fast_while_its_circuit_is_open():
    clock = Clock()
    health = Health(threshold=2, cooldown=30, clock=clock)
    health.record_failure(OPENAI_1.key(7), "status", status=503)
    health.record_failure(OPENAI_1.key(7), "status", status=503)
    clock.now += 5
    with pytest.raises(Exhausted) as ended:
        plan([OPENAI_1], clock=clock, health=health, retries=3).next()
    assert ended.value.reason == CIRCUIT_OPEN and ended.value.attempts == 0
    assert ended.value.failure.status == 503 and ended.value.retry_after == pytest.approx(25)
    assert "openai/gpt-4o (key-1)" in ended.value.message and "HTTP 503" in ended.value.message


def test_after_the_cool_down_the_next_attempt_is_a_probe_and_a_lost_probe_does_not_count():
    clock = Clock()
    health = Health(threshold=1, cooldown=30, clock=clock)
    health.record_failure(OPENAI_1.key(7), "connect")
    clock.now += 30
    p = plan([OPENAI_1, ANTHROPIC], clock=clock, health=health, max_attempts=1)
    attempt = p.next()
    assert attempt.target == OPENAI_1 and attempt.probe
    assert asyncio.run(health.claim_probe(OPENAI_1.key(7)))  # another request got there first
    p.release(attempt)
    instead = p.next()
    assert (instead.target, instead.number, instead.probe) == (ANTHROPIC, 1, False)


def test_a_plan_rejects_a_route_it_cannot_serve():
    with pytest.raises(ValueError, match="at least one target"):
        Plan(7, [], health=Health())
    with pytest.raises(ValueError, match="Unknown routing strategy 'fastest'"):
        Plan(7, [OPENAI_1], health=Health(), strategy="fastest")
