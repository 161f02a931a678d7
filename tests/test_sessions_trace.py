"""A session as a trace: its requests on one time axis (bars placed by start and duration, overlaps visible),
grouped and indented by X-Ingate-Session-Path, totals with the duration in seconds under a minute, its name and
properties; for Claude Code sessions the turns, by the rule the page states."""

import datetime
import json
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability.models import ObservabilitySettings, RequestBody, RequestRecord
from observability.traces import duration_text

T0 = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=1)


def at(tenant, seconds: float, ms: float, **fields):
    values = {
        "org": tenant.org,
        "app": tenant.app,
        "key": tenant.key,
        "provider": "anthropic",
        "endpoint": "messages",
        "model": "claude-sonnet-4",
        "status": 200,
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "cost_total": Decimal("0.001"),
        "usage_source": "reported",
        "total_ms": ms,
        "session_id": "trace-1",
        "created_at": T0 + datetime.timedelta(seconds=seconds),
        **fields,
    }
    return RequestRecord.objects.create(**values)


@pytest.fixture
def viewer(world):
    client = Client()
    client.force_login(world.own.users["viewer"])
    return client


def bars(shown: str) -> dict[str, tuple[float, float]]:
    found = re.findall(
        r'data-record="([0-9a-f-]+)">.*?style="left: ([0-9.]+)%; width: ([0-9.]+)%"', shown, flags=re.DOTALL
    )
    return {pk: (float(left), float(width)) for pk, left, width in found}


def test_the_timeline_places_each_request_by_start_and_duration_so_overlaps_show(viewer, world):
    first = at(world.own, 0, 4000)  # 0–4 s
    overlap = at(world.own, 2, 4000)  # 2–6 s: runs beside the first
    last = at(world.own, 8, 2000)  # 8–10 s
    shown = viewer.get("/ingate/sessions/trace-1/", {"org": "own-org"}).content.decode()
    placed = bars(shown)
    assert placed[str(first.pk)] == (0.0, 40.0)
    assert placed[str(overlap.pk)] == (20.0, 40.0)
    assert placed[str(last.pk)] == (80.0, 20.0)
    assert 'data-testid="session-duration">10 s<' in shown  # seconds under a minute
    assert 'data-testid="session-requests">3<' in shown and 'data-testid="session-tokens">360<' in shown
    assert 'data-testid="session-cost">$0.003<' in shown


def test_requests_are_grouped_and_indented_by_session_path(viewer, world):
    at(world.own, 0, 1000, session_path="/trace-1")
    at(world.own, 1, 1000, session_path="/trace-1/research")
    at(world.own, 2, 1000, session_path="/trace-1/research/search")
    at(world.own, 3, 1000, session_path="/trace-1/write")
    shown = viewer.get("/ingate/sessions/trace-1/", {"org": "own-org"}).content.decode()
    paths = re.findall(r'data-testid="gantt-group" data-path="([^"]+)"', shown)
    assert paths == ["/trace-1", "/trace-1/research", "/trace-1/research/search", "/trace-1/write"]
    assert '<div class="gantt-label" style="padding-left: 3em"><b>search</b>' in shown


def test_the_sessions_name_and_properties_are_shown(viewer, world):
    at(world.own, 0, 500, session_name="Refactor billing", properties={"env": "prod"})
    at(world.own, 1, 500, session_name="Refactor billing", properties={"env": "prod", "team": "core"}, user_id="ann")
    shown = viewer.get("/ingate/sessions/trace-1/", {"org": "own-org"}).content.decode()
    assert "<h1>Refactor billing <small>session trace-1</small></h1>" in shown
    assert "<code>env=prod</code><code>team=core</code>" in shown
    assert 'href="/ingate/users/ann/?org=own-org">ann</a>' in shown


def test_durations_read_as_seconds_under_a_minute_then_minutes_and_hours():
    assert [duration_text(s) for s in (0.25, 12.4, 59.4, 61, 754, 3600, 7380)] == [
        "0.2 s",
        "12 s",
        "59 s",
        "1 min 1 s",
        "12 min 34 s",
        "1 h",
        "2 h 3 min",
    ]


def claude_code(tenant, seconds, messages, *, tools=True, model="claude-sonnet-4"):
    body = {"model": model, "system": "You are Claude Code.", "messages": messages}
    if tools:
        body["tools"] = [{"name": "Bash", "input_schema": {}}]
    record = at(tenant, seconds, 900, client="claude-code", model=model)
    RequestBody.objects.create(record=record, created_at=record.created_at, request=json.dumps(body))
    return record


def test_claude_code_sessions_show_their_turns_from_the_kept_bodies(viewer, world):
    ObservabilitySettings.objects.create(org=world.own.org, body_mode="full")
    ask = [{"role": "user", "content": [{"type": "text", "text": "Fix the failing test"}]}]
    call = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "1 failed"}]}
    claude_code(world.own, 0, ask)
    claude_code(
        world.own,
        1,
        [{"role": "user", "content": "Write a title for: Fix the failing test"}],
        tools=False,
        model="claude-3-5-haiku",
    )
    claude_code(world.own, 2, [*ask, call, result])
    answer = {"role": "assistant", "content": "Fixed."}
    claude_code(world.own, 5, [*ask, call, result, answer, {"role": "user", "content": "Now run <all> tests"}])
    shown = viewer.get("/ingate/sessions/trace-1/", {"org": "own-org"}).content.decode()
    turns = re.findall(r'data-testid="turn">(.*?)<small>\((\d+) requests?\)', shown, flags=re.DOTALL)
    assert [(re.sub(r"<[^>]+>", "", text).strip(), n) for text, n in turns] == [
        ("Turn 1: Fix the failing test", "3"),
        ("Turn 2: Now run &lt;all&gt; tests", "1"),
    ]
    assert shown.count('<small class="badge">side</small>') == 1


def test_without_kept_bodies_a_claude_code_session_says_why_it_shows_no_turns(viewer, world):
    at(world.own, 0, 900, client="claude-code")
    shown = viewer.get("/ingate/sessions/trace-1/", {"org": "own-org"}).content.decode()
    assert 'data-testid="no-turns"' in shown and "keeps only their shape" in shown


def test_another_orgs_session_is_not_found(world):
    at(world.own, 0, 900)
    client = Client()
    client.force_login(world.other.users["owner"])
    assert client.get("/ingate/sessions/trace-1/", {"org": "other-org"}).status_code == 404
    assert client.get("/ingate/sessions/trace-1/", {"org": "own-org"}).status_code == 404
