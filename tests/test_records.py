"""Every request through the gateway becomes a priced, attributed record in the database within moments."""

import csv
import datetime
import io
import json
import time
import uuid
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from observability import rollups
from observability.models import PriceOverride, RecordRollup, RequestRecord, SessionRollup
from observability.pipeline import RecordPipeline
from proxy.records import ProxyRecord
from tenancy.tests.factories import make_key
from tests.fake_provider import completion_tokens


def wait_for_record(request_id: str, timeout: float = 5.0) -> RequestRecord:
    deadline = time.monotonic() + timeout
    while True:
        found = RequestRecord.objects.filter(pk=request_id).first()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"record {request_id} never arrived"
        time.sleep(0.02)


def test_openai_sdk_request_is_recorded_with_tokens_cost_and_its_request_id(recording, gateway_key, fake):
    key, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three four"}],
        extra_headers={"x-fake-cached-tokens": "2"},
    )
    record = wait_for_record(raw.headers["x-ingate-request-id"])
    assert (record.org_id, record.app_id, record.key_id) == (key.org_id, key.app_id, key.pk)
    assert (record.provider, record.endpoint, record.model, record.response_model) == (
        "openai",
        "chat.completions",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
    )
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens) == (4, completion_tokens(), 2)
    assert record.usage_source == "reported" and record.status == 200 and record.outcome == "ok"
    # gpt-4o-mini: 2 uncached x $0.15/M + 2 cached x $0.075/M + 5 x $0.60/M
    assert record.cost_input == Decimal("0.0000003")
    assert record.cost_cache == Decimal("0.00000015")
    assert record.cost_output == Decimal("0.000003")
    assert record.cost_total == Decimal("0.00000345")
    assert record.price_source.startswith("genai-prices@")
    assert record.client == "openai-python" and record.total_ms > 0


def test_claude_code_style_stream_is_recorded_in_its_session(recording, gateway_key, fake):
    _, plaintext = gateway_key
    session = "5b1f6a2e-0c55-4c1b-9d7e-2f0a3c4d5e6f"
    client = anthropic.Anthropic(
        api_key=plaintext,
        base_url=recording.url,
        max_retries=0,
        default_headers={"x-claude-code-session-id": session, "user-agent": "claude-cli/2.0.31 (external, cli)"},
    )
    with client.messages.with_streaming_response.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        stream=True,
        messages=[{"role": "user", "content": "hi there"}],
        metadata={"user_id": f"user_abc_account_0e9d_session_{session}"},
        extra_headers={"x-fake-cached-tokens": "1000", "x-fake-cache-write-tokens": "200"},
    ) as response:
        request_id = response.headers["x-ingate-request-id"]
        response.read()
    record = wait_for_record(request_id)
    assert record.stream and record.session_id == session and record.client == "claude-code"
    assert record.user_id == "user_abc_account_0e9d"
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (1202, 1000, 200)
    assert record.output_tokens == completion_tokens()
    # claude-haiku-4-5: 2 x $1/M input, 1000 x $0.10/M read, 200 x $1.25/M write, 5 x $5/M output
    assert record.cost_total == Decimal("0.000002") + Decimal("0.0001") + Decimal("0.00025") + Decimal("0.000025")


def test_unknown_model_is_recorded_without_a_price_not_as_free(recording, gateway_key, fake):
    _, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="acme-private-1", messages=[{"role": "user", "content": "x"}]
    )
    record = wait_for_record(raw.headers["x-ingate-request-id"])
    assert record.input_tokens == 1 and record.cost_total is None and record.price_source == ""


def test_refused_requests_are_recorded_too(recording, gateway_key, fake):
    _, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], extra_headers={"x-fake-status": "429"}
        )
    record = wait_for_record(caught.value.response.headers["x-ingate-request-id"])
    assert (record.status, record.outcome, record.usage_source) == (429, "upstream_error", "none")
    # The provider's own words, for the logs (OpenAI calls a request-rate limit "requests").
    assert (record.error_type, record.error) == ("requests", caught.value.body["message"])


def _proxy_record(org_id: int, **fields) -> ProxyRecord:
    return ProxyRecord(
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
        **fields,
    )


def test_records_still_in_memory_are_written_on_clean_shutdown(gateway_key, settings):
    settings.INGATE_RECORD_FLUSH_SECONDS = 60  # only close() will flush
    settings.INGATE_RECORD_BATCH_SIZE = 20  # several rounds of batches are pending at close
    settings.INGATE_RECORD_INGEST = "gateway"
    settings.INGATE_RECORD_STREAM = f"ingate:records:test:{uuid.uuid4().hex}"
    key, _ = gateway_key
    pipeline = RecordPipeline()
    records = [_proxy_record(key.org_id) for _ in range(1234)]
    for record in records:
        pipeline.submit(record)
    pipeline.close()
    assert RequestRecord.objects.filter(org_id=key.org_id).count() == 1234


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (set in CI)")
def test_records_read_by_a_writer_that_died_are_written_once_by_another(gateway_key, settings):
    settings.INGATE_RECORD_STREAM = f"ingate:records:test:{uuid.uuid4().hex}"
    settings.INGATE_RECORD_CLAIM_SECONDS = 0.2
    settings.INGATE_RECORD_INGEST = "gateway"  # these writers consume the stream themselves
    key, _ = gateway_key
    dead = RecordPipeline(consumer="gateway-that-died")
    records = [_proxy_record(key.org_id) for _ in range(30)]
    # The dead writer put the batch on the stream and read it, then died before inserting or acknowledging.
    from observability.rows import slim

    dead._produce([slim(r) for r in records])
    client = dead._client()
    read = client.xreadgroup("writers", dead.consumer, {dead.stream: ">"}, count=100)
    assert sum(len(fields) for _, fields in read[0][1]) == 30  # every record it streamed (an entry holds a batch)
    assert RequestRecord.objects.count() == 0

    survivor = RecordPipeline(consumer="another-gateway")
    time.sleep(0.25)
    assert survivor.flush() == 30
    assert survivor.flush() == 0  # acknowledged: nothing is replayed
    assert RequestRecord.objects.filter(pk__in=[r.request_id for r in records]).count() == 30
    # A replay of the same rows (say the ack was lost) inserts nothing twice.
    survivor._produce([slim(r) for r in records[:5]])
    assert survivor.flush() == 5
    assert RequestRecord.objects.count() == 30
    rollup = RecordRollup.objects.get(org=key.org, dimension="all")
    assert (rollup.requests, rollup.input_tokens) == (30, 300)  # the replay was not counted again
    client.delete(dead.stream)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_export_streams_every_filtered_row_from_the_server(gateway, gateway_key, kind):
    key, _ = gateway_key
    _, reader = make_key(app=key.app, scopes=["logs:read"])
    now = timezone.now()
    RequestRecord.objects.bulk_create(
        RequestRecord(
            org=key.org,
            app=key.app,
            provider="openai",
            endpoint="chat.completions",
            model=f"m-{n % 3}",
            session_id="big" if n % 2 else "",
            status=200,
            created_at=now - datetime.timedelta(seconds=n),
        )
        for n in range(1500)
    )
    chunks = []
    with httpx.stream(
        "GET",
        gateway.url + "/ingate/api/v1/records/export/",
        params={"export_format": kind, "session": "big"},
        headers={"authorization": f"Bearer {reader}"},
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers.get("transfer-encoding") == "chunked"  # streamed, not built in memory first
        chunks = list(reply.iter_bytes())
    text = b"".join(chunks).decode()
    rows = list(csv.DictReader(io.StringIO(text))) if kind == "csv" else [json.loads(x) for x in text.splitlines()]
    assert len(rows) == 750 and {row["session_id"] for row in rows} == {"big"}
    assert {row["model"] for row in rows} == {"m-0", "m-1", "m-2"}


def test_the_writer_keeps_hourly_rollups_and_sessions_for_the_overview(recording, gateway_key, fake):
    key, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    ids = []
    for n in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "one two three four"}],
            extra_headers={"x-ingate-session-id": "rollup-session", "x-ingate-user-id": f"u{n % 2}"},
        )
        ids.append(raw.headers["x-ingate-request-id"])
    for request_id in ids:
        wait_for_record(request_id)
    total = RecordRollup.objects.get(org=key.org, dimension="all")
    assert (total.requests, total.input_tokens, total.output_tokens) == (3, 12, 3 * completion_tokens())
    assert total.cost == sum(r.cost_total for r in RequestRecord.objects.all())
    assert sum(total.latency) == 3
    users = dict(RecordRollup.objects.filter(org=key.org, dimension="user").values_list("value", "requests"))
    assert users == {"u0": 2, "u1": 1}
    session = SessionRollup.objects.get(org=key.org, session_id="rollup-session")
    assert session.requests == 3 and session.tokens == 3 * (4 + completion_tokens())
    # Rebuilding from the raw rows (after an import, say) gives exactly what the writer kept incrementally.
    kept = sorted(
        RecordRollup.objects.filter(org=key.org).values_list("dimension", "value", "requests", "cost", "latency")
    )
    rollups.rebuild(key.org_id)
    assert (
        sorted(
            RecordRollup.objects.filter(org=key.org).values_list("dimension", "value", "requests", "cost", "latency")
        )
        == kept
    )
    assert SessionRollup.objects.get(org=key.org, session_id="rollup-session").requests == 3


def test_an_orgs_price_override_prices_its_fine_tuned_model(recording, gateway_key, fake):
    key, plaintext = gateway_key
    PriceOverride.objects.create(
        org=key.org, model="ft:gpt-4o-mini:acme::x1", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2")
    )
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="ft:gpt-4o-mini:acme::x1", messages=[{"role": "user", "content": "one two three four"}]
    )
    record = wait_for_record(raw.headers["x-ingate-request-id"])
    assert record.price_source == "override"
    assert record.cost_total == Decimal("0.000004") + Decimal("0.00001")  # 4 x $1/M + 5 x $2/M


def test_a_stream_cut_short_is_recorded_with_the_usage_seen_so_far(recording, gateway_key, fake):
    _, plaintext = gateway_key
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "one two three"}],
    }
    headers = {"x-api-key": plaintext, "anthropic-version": "2023-06-01", "x-fake-cut-after": "2"}
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", recording.url + "/v1/messages", json=body, headers=headers) as response:
            request_id = response.headers["x-ingate-request-id"]
            for _ in response.iter_lines():
                pass
    record = wait_for_record(request_id)
    assert record.outcome == "upstream_cut" and record.stream
    assert record.input_tokens == 3 and record.usage_source == "reported"  # message_start arrived before the cut
    assert record.cost_total is not None


def test_an_anthropic_sdk_request_shows_up_in_the_api_with_tokens_cost_and_session(recording, gateway_key, fake):
    key, plaintext = gateway_key
    _, reader = make_key(app=key.app, scopes=["logs:read"])
    client = anthropic.Anthropic(
        api_key=plaintext, base_url=recording.url, max_retries=0, default_headers={"x-ingate-session-id": "support-42"}
    )
    raw = client.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "one two three"}]
    )
    request_id = raw.headers["x-ingate-request-id"]
    wait_for_record(request_id)
    listed = httpx.get(
        recording.url + "/ingate/api/v1/records/",
        params={"session": "support-42"},
        headers={"authorization": f"Bearer {reader}"},
    ).json()["results"]
    assert [row["id"] for row in listed] == [request_id]
    row = listed[0]
    assert (row["provider"], row["input_tokens"], row["output_tokens"], row["priced"]) == ("anthropic", 3, 5, True)
    assert Decimal(row["cost_total"]) == Decimal("0.000003") + Decimal("0.000025")  # $1/M in, $5/M out
