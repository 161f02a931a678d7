"""The live tail: a signed-in member's websocket receives each new request of their org as it is recorded."""

import json

import openai
import pytest
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, OrganizationFactory, UserFactory


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_new_requests_arrive_on_the_live_websocket(recording, gateway_key, fake):
    key, plaintext = gateway_key
    viewer = MembershipFactory(org=key.org, role=Role.VIEWER, user=UserFactory(username="watcher")).user
    ws_url = recording.url.replace("http://", "ws://") + "/ingate/ws/live/?org=acme"
    with connect(ws_url, additional_headers={"Cookie": session_cookie(viewer), "Origin": recording.url}) as socket:
        client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        message = json.loads(socket.recv(timeout=5))
    assert message["type"] == "record"
    assert message["record"]["id"] == raw.headers["x-ingate-request-id"]
    assert message["record"]["model"] == "gpt-4o-mini" and message["record"]["cost_total"] is not None


def test_the_live_websocket_refuses_outsiders(recording, gateway_key):
    OrganizationFactory(slug="globex")
    stranger = MembershipFactory(org=OrganizationFactory(slug="other"), user=UserFactory(username="stranger")).user
    ws_url = recording.url.replace("http://", "ws://") + "/ingate/ws/live/?org=acme"
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url, additional_headers={"Cookie": session_cookie(stranger), "Origin": recording.url})
    assert caught.value.response.status_code == 403
