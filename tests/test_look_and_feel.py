"""What every page shares: `/` leads to the dashboard (while HEAD / stays the proxy's instant answer and provider
paths stay the proxy's), and the favicon. Dark mode and the phone layout: tests/test_browser_logs.py."""

import httpx
from django.contrib.staticfiles import finders


def test_the_root_leads_to_the_dashboard_and_head_stays_the_proxys_instant_answer(gateway, gateway_key):
    _, plaintext = gateway_key
    with httpx.Client(base_url=gateway.url) as client:
        root = client.get("/")
        assert root.status_code == 302 and root.headers["location"] == "/ingate/"
        head = client.head("/")
        assert head.status_code == 200 and head.content == b""
        # A provider path is still the proxy's: an unknown key gets OpenAI's error shape, not a redirect.
        models = client.get("/v1/models", headers={"authorization": "Bearer ing-not-a-key"})
        assert models.status_code == 401 and "error" in models.json()


def test_pages_name_a_favicon_and_favicon_ico_leads_to_it(client, world):
    client.force_login(world.own.users["viewer"])
    page = client.get("/ingate/logs/", {"org": "own-org"}).content.decode()
    assert 'rel="icon" href="/static/observability/favicon.svg"' in page
    assert client.get("/favicon.ico")["Location"] == "/static/observability/favicon.svg"
    assert finders.find("observability/favicon.svg")
