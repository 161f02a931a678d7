"""The websockets stay up and resume: the channel layer on Redis outlives its own blocking read, the live tail
picks up after the cursor a reconnecting page sends (no row twice, none lost, in order), and the eval run
socket opens with the run's state as it is now."""

import asyncio
import datetime
import json
import time

import pytest
from channels.layers import channel_layers
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from websockets.sync.client import connect

from observability.models import RequestRecord
from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.fixture
def watcher(gateway_key):
    key, _ = gateway_key
    return MembershipFactory(org=key.org, role=Role.VIEWER, user=UserFactory(username="watcher")).user


def live(gateway, user, after: str = ""):
    url = gateway.url.replace("http://", "ws://") + "/ingate/ws/live/?org=acme" + (f"&after={after}" if after else "")
    return connect(url, additional_headers={"Cookie": session_cookie(user), "Origin": gateway.url})


def records(org, count: int, *, ago: float = 0.0) -> list[str]:
    """`count` records of `org`, stamped `ago` seconds back, a microsecond apart; their ids, oldest first."""
    start = timezone.now() - datetime.timedelta(seconds=ago)
    made = [
        RequestRecord(
            org=org,
            provider="openai",
            endpoint="chat.completions",
            model="gpt-4o-mini",
            status=200,
            created_at=start + datetime.timedelta(microseconds=n),
        )
        for n in range(count)
    ]
    RequestRecord.objects.bulk_create(made)
    return [str(r.pk) for r in made]


def receive(socket, count: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < count:
        got.append(json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic()))))
    return got


def nothing_more(socket, wait: float = 2.5) -> bool:
    """True when no further message comes within `wait` seconds (more than two polls)."""
    try:
        socket.recv(timeout=wait)
    except TimeoutError:
        return True
    return False


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="the Redis channel layer needs REDIS_URL (set in CI)")
def test_the_redis_channel_layer_waits_for_a_message_past_its_five_second_blocking_read():
    layer = channel_layers.make_backend("default")  # a fresh layer, as a new server process builds it

    async def wait_on_an_empty_channel():
        channel = await layer.new_channel()
        try:
            with pytest.raises(asyncio.TimeoutError):  # our own deadline, not "Timeout reading from" Redis
                await asyncio.wait_for(layer.receive(channel), timeout=7)
        finally:
            await layer.close_pools()

    asyncio.run(wait_on_an_empty_channel())


def test_a_reconnecting_live_tail_gets_only_the_records_after_its_cursor_in_order(recording, gateway_key, watcher):
    key, _ = gateway_key
    first = records(key.org, 3)
    with live(recording, watcher) as socket:
        seen = receive(socket, 3)
    assert [m["record"]["id"] for m in seen] == first
    cursor = seen[-1]["cursor"]
    assert cursor == first[-1]

    later = records(key.org, 4)  # while the page was away
    with live(recording, watcher, after=cursor) as socket:
        resumed = receive(socket, 4)
        assert nothing_more(socket)
    assert [m["record"]["id"] for m in resumed] == later
    assert [m["cursor"] for m in resumed] == later


def test_a_cursor_that_names_no_record_of_the_org_starts_the_tail_afresh(recording, gateway_key, watcher):
    key, _ = gateway_key
    records(key.org, 2, ago=60)
    with live(recording, watcher, after="not-a-uuid") as socket:
        assert nothing_more(socket, 1.5)
    with live(recording, watcher, after="00000000-0000-4000-8000-000000000000") as socket:
        fresh = records(key.org, 1)
        assert [m["record"]["id"] for m in receive(socket, 1)] == fresh
        assert nothing_more(socket, 1.5)


def test_a_long_request_recorded_after_later_ones_is_sent_once_and_keeps_the_cursor(recording, gateway_key, watcher):
    key, _ = gateway_key
    with live(recording, watcher) as socket:
        now = records(key.org, 1)
        assert [m["record"]["id"] for m in receive(socket, 1)] == now
        slow = records(key.org, 1, ago=30)  # started half a minute ago, written only now
        message = receive(socket, 1)[0]
        assert message["record"]["id"] == slow[0] and message["cursor"] == now[0]
        assert nothing_more(socket)


def test_a_busy_org_gets_every_record_once_even_past_one_polls_batch(recording, gateway_key, watcher):
    key, _ = gateway_key
    with live(recording, watcher) as socket:
        made = records(key.org, 450)
        got = receive(socket, 450, timeout=15)
        assert nothing_more(socket)
    assert [m["record"]["id"] for m in got] == made


def test_the_eval_run_socket_opens_with_the_runs_state_as_it_is_now(recording, gateway_key, watcher):
    from evals import services
    from evals.models import EvalRun, RunStatus
    from evals.transfer import clean_item
    from tenancy.audit import Actor

    key, _ = gateway_key
    dataset = services.dataset_create(
        actor=Actor.system("test"), org=key.org, name="d", items=[clean_item({"input": "hi", "expected": "hi"})]
    )
    run = EvalRun.objects.create(
        org=key.org,
        dataset_version=dataset.latest,
        total=4,
        done=4,
        status=RunStatus.COMPLETED,
        finished_at=timezone.now(),
    )
    url = recording.url.replace("http://", "ws://") + f"/ingate/ws/evals/runs/{run.pk}/"
    with connect(url, additional_headers={"Cookie": session_cookie(watcher), "Origin": recording.url}) as socket:
        state = json.loads(socket.recv(timeout=5))
    assert (state["status"], state["done"], state["total"], state["finished"]) == ("completed", 4, 4, True)
