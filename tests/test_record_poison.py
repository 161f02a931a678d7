"""One bad request must never cost other requests their records, and no outage may make the rollups count
twice. Runs embedded by default, and through the Redis stream with REDIS_URL (+ PostgreSQL) set."""

import time
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from django.db import OperationalError
from django.db.models import Count, Sum

from observability import rollups
from observability.models import DeadRecord, RecordRollup, RequestRecord, SessionRollup
from observability.pipeline import RecordPipeline
from observability.rows import slim
from proxy.records import ProxyRecord
from tenancy.models import Organization
from tenancy.tests.factories import OrganizationFactory, UserFactory
from tests.tcp_proxy import TcpProxy


def _record(org_id: int, **fields) -> ProxyRecord:
    values = dict(
        request_id=str(uuid.uuid4()),
        provider="openai",
        endpoint="chat.completions",
        method="POST",
        path="/v1/chat/completions",
        org_id=org_id,
        model="gpt-4o-mini",
        status=200,
        started_at=time.time(),
        usage={"prompt_tokens": 10, "completion_tokens": 2},
        request_headers={"x-ingate-session-id": "poison"},
    )
    values.update(fields)
    return ProxyRecord(**values)


def _gemini(model: str) -> dict:
    return dict(
        provider="gemini",
        endpoint="generateContent",
        model=model,
        usage={"promptTokenCount": 100, "candidatesTokenCount": 5, "cachedContentTokenCount": 500},
    )


# What one client or provider can send that used to make the writer drop or retry the whole batch.
POISONS = {
    "nul_in_model": dict(model="gpt-4o-mini\x00"),
    "nul_in_user": dict(body={"user": "bob\x00"}),
    "nul_in_a_property": dict(request_headers={"x-ingate-session-id": "poison", "x-ingate-property-team": "a\x00b"}),
    "nul_in_a_session_header": dict(request_headers={"x-ingate-session-id": "poison\x00"}),
    "lone_surrogate_in_metadata_user": dict(
        provider="anthropic", body={"metadata": {"user_id": '{"account_uuid": "\\ud800"}'}}
    ),
    "prompt_tokens_beyond_int32": dict(usage={"prompt_tokens": 2**31, "completion_tokens": 2}),
    "absurd_usage": dict(usage={"prompt_tokens": 2**63 - 1, "completion_tokens": 2**63 - 1}),
    "more_cached_than_prompt_on_a_tiered_model": _gemini("gemini-2.5-pro"),
    "more_cached_than_prompt_on_a_flat_model": _gemini("gemini-2.0-flash"),
}


@pytest.fixture
def pipeline_settings(settings):
    settings.INGATE_RECORD_INGEST = "gateway"  # the writer consumes the stream itself (with Redis)
    settings.INGATE_RECORD_STREAM = f"ingate:records:test:{uuid.uuid4().hex}"
    settings.INGATE_RECORD_BATCH_SIZE = 50  # the poisoned record shares its batch with others
    settings.INGATE_RECORD_CLAIM_SECONDS = 0.2
    yield settings
    if django_settings.REDIS_URL:
        redis.Redis.from_url(django_settings.REDIS_URL).delete(settings.INGATE_RECORD_STREAM)


def _write(records: list[ProxyRecord]) -> None:
    pipeline = RecordPipeline()
    for record in records:
        pipeline.submit(record)
    pipeline.close()


def _assert_rollups_equal_records(org_id: int) -> None:
    stored = RequestRecord.objects.filter(org_id=org_id).aggregate(n=Count("id"), tokens=Sum("input_tokens"))
    rollup = RecordRollup.objects.get(org_id=org_id, dimension="all")
    assert (rollup.requests, rollup.input_tokens) == (stored["n"], stored["tokens"])
    sessions = RequestRecord.objects.filter(org_id=org_id, session_id="poison").count()
    assert SessionRollup.objects.get(org_id=org_id, session_id="poison").requests == sessions


@pytest.mark.parametrize("poison", POISONS)
def test_one_poisoned_request_among_a_hundred_costs_no_other_its_record(gateway_key, pipeline_settings, poison):
    key, _ = gateway_key
    good = [_record(key.org_id) for _ in range(100)]
    bad = _record(key.org_id, **POISONS[poison])
    _write(good[:50] + [bad] + good[50:])
    assert RequestRecord.objects.filter(pk__in=[r.request_id for r in good]).count() == 100
    stored = RequestRecord.objects.get(pk=bad.request_id)  # visible, with what was changed to store it
    assert stored.flags, "the record says what the writer had to change"
    assert stored.cost_total is None or stored.cost_total >= 0
    assert not DeadRecord.objects.exists()
    _assert_rollups_equal_records(key.org_id)


def test_nuls_are_stripped_and_counts_clamped_with_the_reason_kept(gateway_key, pipeline_settings):
    key, _ = gateway_key
    nul = _record(key.org_id, model="gpt-4o-mini\x00", body={"user": "bob\x00"})
    huge = _record(key.org_id, usage={"prompt_tokens": 2**63 - 1, "completion_tokens": 3})
    cached = _record(key.org_id, **_gemini("gemini-2.0-flash"))
    _write([nul, huge, cached])
    nul_row = RequestRecord.objects.get(pk=nul.request_id)
    assert (nul_row.model, nul_row.user_id) == ("gpt-4o-mini", "bob") and nul_row.cost_total is not None
    assert "model: NUL removed" in nul_row.flags and "user_id: NUL removed" in nul_row.flags
    huge_row = RequestRecord.objects.get(pk=huge.request_id)
    assert huge_row.input_tokens == 2**31 - 1 and huge_row.cost_total is None
    assert "unpriced: the provider reported more tokens than a record holds" in huge_row.flags
    assert f"input_tokens: {2**63 - 1} out of range, clamped to {2**31 - 1}" in huge_row.flags
    cached_row = RequestRecord.objects.get(pk=cached.request_id)
    assert cached_row.cost_total is None and cached_row.input_tokens == 100  # unpriced, never negative
    assert any("more cached tokens (500) than input tokens (100)" in flag for flag in cached_row.flags)
    assert RecordRollup.objects.get(org_id=key.org_id, dimension="all").unpriced == 2


def test_a_record_that_still_cannot_be_stored_is_kept_as_a_dead_record_and_the_rest_written(
    gateway_key, pipeline_settings
):
    key, _ = gateway_key
    gone = OrganizationFactory(slug="gone")
    gone_id = gone.pk
    Organization.objects.filter(pk=gone_id).delete()  # deleted while its last request was in flight
    good = [_record(key.org_id) for _ in range(100)]
    broken = [
        _record(key.org_id, request_id="not-a-uuid"),  # fails at insert
        _record(key.org_id, started_at=float("nan")),  # fails while building the row
        _record(gone_id),  # its org's foreign key would fail the whole batch at commit
    ]
    _write(good[:30] + broken[:1] + good[30:60] + broken[1:] + good[60:])
    assert RequestRecord.objects.filter(pk__in=[r.request_id for r in good]).count() == 100
    dead = {d.record_id: d for d in DeadRecord.objects.all()}
    assert set(dead) == {r.request_id for r in broken}
    assert dead["not-a-uuid"].stage == "insert" and dead[broken[1].request_id].stage == "build"
    assert "no longer exists" in dead[broken[2].request_id].error and dead[broken[2].request_id].org_id == gone_id
    assert all(d.attempts == 1 and d.payload for d in dead.values())
    _assert_rollups_equal_records(key.org_id)


def test_staff_replay_a_dead_record_from_the_admin_and_it_leaves_the_dead_letters(
    gateway_key, pipeline_settings, client
):
    key, _ = gateway_key
    still_broken = _record(key.org_id, request_id="not-a-uuid")
    fixed = _record(key.org_id)  # dead before the cause was fixed (a bug since deployed away, say)
    DeadRecord.objects.create(
        record_id=fixed.request_id,
        org_id=key.org_id,
        stage="insert",
        payload=slim(fixed).decode(),
        error="DataError: a bug since fixed",
    )
    _write([still_broken])
    assert DeadRecord.objects.count() == 2
    client.force_login(UserFactory(username="ops", is_staff=True, is_superuser=True))
    listing = client.get("/admin/observability/deadrecord/")
    assert listing.status_code == 200 and b"not-a-uuid" in listing.content
    reply = client.post(
        "/admin/observability/deadrecord/",
        {
            "action": "replay",
            "_selected_action": list(DeadRecord.objects.values_list("pk", flat=True)),
        },
        follow=True,
    )
    assert reply.status_code == 200
    assert RequestRecord.objects.filter(pk=fixed.request_id).exists()
    assert list(DeadRecord.objects.values_list("record_id", "attempts")) == [("not-a-uuid", 2)]
    assert RecordRollup.objects.get(org_id=key.org_id, dimension="all").requests == 1


def test_the_same_record_delivered_twice_is_stored_and_counted_once(gateway_key, pipeline_settings):
    key, _ = gateway_key
    records = [_record(key.org_id) for _ in range(20)]
    _write(records + records[:7])  # in one batch
    _write(records[5:12])  # and again later
    assert RequestRecord.objects.filter(org_id=key.org_id).count() == 20
    _assert_rollups_equal_records(key.org_id)


def test_a_batch_retried_after_failing_midway_counts_nothing_twice(gateway_key, pipeline_settings):
    """The database connection drops in the middle of a batch: nothing of it is kept, and the retry counts once."""
    key, _ = gateway_key
    pipeline_settings.INGATE_RECORD_FLUSH_SECONDS = 60  # only this test flushes, not the writer thread
    records = [_record(key.org_id) for _ in range(60)]
    pipeline = RecordPipeline()
    for record in records[:40]:
        pipeline.submit(record)
    assert pipeline.flush() == 40
    for record in records[20:]:  # half of them again, with 20 new ones
        pipeline.submit(record)
    real_apply, calls = rollups.apply, []

    def apply_then_lose_the_connection(rows):  # the server goes away between the insert and the rollups
        real_apply(rows)
        if not calls:
            calls.append(len(rows))
            raise OperationalError("server closed the connection unexpectedly")

    rollups.apply = apply_then_lose_the_connection
    try:
        with pytest.raises(OperationalError):
            pipeline.flush()
        time.sleep(0.3)  # with Redis, the unacknowledged entries are claimed again once idle this long
        pipeline.flush()  # the retry
    finally:
        rollups.apply = real_apply
        pipeline.close()
    assert calls == [20]  # only the new rows ever reached the rollups
    assert RequestRecord.objects.filter(org_id=key.org_id).count() == 60
    _assert_rollups_equal_records(key.org_id)


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (set in CI)")
def test_rollups_equal_records_after_a_redis_hang_that_applied_a_timed_out_stream_write(gateway_key, pipeline_settings):
    key, _ = gateway_key
    pipeline_settings.INGATE_RECORD_FLUSH_SECONDS = 60  # only this test flushes, not the writer thread
    target = redis.Redis.from_url(django_settings.REDIS_URL).connection_pool.connection_kwargs
    proxy = TcpProxy(target["host"], target["port"])
    pipeline = RecordPipeline()
    # The writer's client, through the forwarder, with a short timeout so the hang costs the test half a second.
    pipeline._redis = redis.Redis(host="127.0.0.1", port=proxy.port, db=target.get("db", 0), socket_timeout=0.5)
    pipeline._redis.xgroup_create(pipeline.stream, "writers", id="0", mkstream=True)
    records = [_record(key.org_id) for _ in range(40)]
    try:
        for record in records:
            pipeline.submit(record)
        proxy.hold_replies()
        with pytest.raises(redis.TimeoutError):
            pipeline.flush()  # the XADDs went through; their answers never came back
        proxy.forward()
        assert _records_on_stream(pipeline.stream) == 40
        while pipeline._pending:
            pipeline.flush()  # the writer sends the batch again: every record is on the stream twice
        pipeline.flush()
    finally:
        pipeline.close()
        proxy.close()
    assert RequestRecord.objects.filter(org_id=key.org_id).count() == 40
    _assert_rollups_equal_records(key.org_id)


def _records_on_stream(stream: str) -> int:
    """Records on the stream (an entry holds a batch of them, one a field)."""
    return sum(len(fields) for _, fields in redis.Redis.from_url(django_settings.REDIS_URL).xrange(stream))


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (set in CI)")
def test_an_unreadable_record_in_a_streamed_batch_is_dead_lettered_alone(gateway_key, pipeline_settings):
    key, _ = gateway_key
    pipeline_settings.INGATE_RECORD_FLUSH_SECONDS = 60  # only this test flushes, not the writer thread
    good = [_record(key.org_id) for _ in range(20)]
    pipeline = RecordPipeline()
    try:
        pipeline._produce([slim(r) for r in good[:10]] + [b'{"request_id": "cut sho'] + [slim(r) for r in good[10:]])
        [(entry_id, fields)] = redis.Redis.from_url(django_settings.REDIS_URL).xrange(pipeline.stream)
        assert len(fields) == 21  # the batch is one stream entry
        assert pipeline.flush() == 21
    finally:
        pipeline.close()
    assert RequestRecord.objects.filter(pk__in=[r.request_id for r in good]).count() == 20
    dead = DeadRecord.objects.get()
    assert (dead.record_id, dead.stage) == (f"stream:{entry_id.decode()}:10", "read")
    assert dead.payload == '{"request_id": "cut sho'  # kept as it arrived
    assert _records_on_stream(pipeline.stream) == 0  # acknowledged: nothing is replayed
    _assert_rollups_equal_records(key.org_id)


def test_a_nul_in_a_requests_model_and_user_through_the_gateway_costs_no_other_request_its_record(
    recording, gateway_key, fake
):
    import httpx

    _, plaintext = gateway_key
    auth = {"authorization": f"Bearer {plaintext}"}

    def send(model: str, user: str) -> str:
        body = {"model": model, "user": user, "messages": [{"role": "user", "content": "one two"}]}
        reply = httpx.post(recording.url + "/v1/chat/completions", json=body, headers=auth)
        assert reply.status_code == 200  # the upstream call succeeded either way
        return reply.headers["x-ingate-request-id"]

    good = [send("gpt-4o-mini", f"u{n}") for n in range(10)]
    poisoned = send("gpt-4o-mini\u0000", "bob\u0000")
    good += [send("gpt-4o-mini", f"u{n}") for n in range(10)]
    deadline = time.monotonic() + 10
    while RequestRecord.objects.filter(pk__in=good + [poisoned]).count() < 21:
        assert time.monotonic() < deadline, "records never arrived"
        time.sleep(0.05)
    record = RequestRecord.objects.get(pk=poisoned)
    assert (record.model, record.user_id) == ("gpt-4o-mini", "bob") and record.cost_total is not None
    assert "model: NUL removed" in record.flags
