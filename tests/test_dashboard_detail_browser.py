"""In Debian's headless Chromium: a request proxied with a hostile message shows as chat bubbles, the script as
text and never run, its body copied with one click and replayed in the playground; a session with nested paths
draws its timeline; an admin makes a key on the keys page, uses it, revokes it, and the gateway refuses it.

Set INGATE_SCREENSHOT_DIR to keep screenshots of these pages at 1,280 and 390 px wide."""

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import openai
import pytest
from playwright.sync_api import expect, sync_playwright

from observability.models import ObservabilitySettings
from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)"
)
ATTACK = '<script>window.owned = true</script><img src=x onerror="window.owned = true">'
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture
def admin(gateway_key):
    """An admin of the key's org, whose bodies are kept in full. Made before the browser starts (Playwright's
    sync API runs an event loop in this thread, after which Django refuses ORM calls here)."""
    key, _ = gateway_key
    ObservabilitySettings.objects.create(org=key.org, body_mode="full")
    return MembershipFactory(org=key.org, role=Role.ADMIN, user=UserFactory(username="ada")).user


@pytest.fixture
def browser(admin):
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    yield context.new_page()
    context.close()


@pytest.fixture
def image_host():
    """A real image server on loopback that counts what it is asked for: whether the page fetched a remote image."""
    fetched: list[str] = []

    class Images(BaseHTTPRequestHandler):
        def do_GET(self):
            fetched.append(self.path)
            png = bytes.fromhex(
                "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                "1f15c4890000000d4944415478da63fccf1400000f0003010001d8b5c4ca0000000049454e44ae426082"
            )
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", fetched
    server.shutdown()


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/ingate/")
    page.fill("#id_username", username)
    page.fill("#id_password", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ingate/")


def screenshots(page, name: str) -> None:
    """Full-page screenshots at a laptop's and a phone's width, when INGATE_SCREENSHOT_DIR asks for them."""
    folder = os.environ.get("INGATE_SCREENSHOT_DIR")
    if not folder:
        return
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_conversation_shows_as_chat_bubbles_with_the_script_as_text(recording, gateway_key, fake, page, image_host):
    _, plaintext = gateway_key
    host, fetched = image_host
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "You describe pictures."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": ATTACK},
                    {"type": "image_url", "image_url": {"url": PIXEL}},
                    {"type": "image_url", "image_url": {"url": f"{host}/cat.png"}},
                ],
            },
        ],
    )
    request_id = raw.headers["x-ingate-request-id"]
    recording.app.sink.close()
    sign_in(page, recording.url, "ada")
    page.goto(f"{recording.url}/ingate/logs/{request_id}/")
    chat = page.get_by_test_id("chat")
    expect(chat.locator(".bubble")).to_have_count(3)
    expect(chat.locator('.bubble[data-role="user"] .chat-text')).to_have_text(ATTACK)  # shown, as text
    assert page.evaluate("() => window.owned === undefined")  # and never run
    thumbnail = chat.locator("img.chat-image")
    expect(thumbnail).to_have_attribute("src", PIXEL)
    assert page.evaluate("img => img.complete && img.naturalWidth", thumbnail.element_handle()) == 1
    page.wait_for_load_state("networkidle")
    assert fetched == []  # the remote image waits for the reader
    chat.get_by_role("button", name="Show image").click()
    expect(chat.locator(f'img.chat-image[src="{host}/cat.png"]')).to_be_visible()
    assert fetched == ["/cat.png"]
    expect(page.get_by_test_id("answer")).to_be_visible()

    page.locator('[data-copy="request-json"]').click()
    expect(page.locator('[data-copy="request-json"]')).to_have_text("Copied")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert '"model": "gpt-4o-mini"' in copied and "\n  " in copied  # the pretty-printed body
    screenshots(page, "request")

    page.get_by_test_id("replay").click()
    expect(page.locator("textarea[name=system]")).to_have_value("You describe pictures.")
    expect(page.get_by_test_id("user")).to_have_value(ATTACK)
    expect(page.get_by_test_id("model-0")).to_have_value("gpt-4o-mini")


def test_a_session_draws_its_requests_on_a_timeline_nested_by_path(recording, gateway_key, fake, page):
    _, plaintext = gateway_key
    client = anthropic.Anthropic(api_key=plaintext, base_url=recording.url, max_retries=0)
    for path in ("/agent", "/agent/research", "/agent/research", "/agent/write"):
        client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=50,
            messages=[{"role": "user", "content": f"step {path}"}],
            extra_headers={
                "x-ingate-session-id": "agent-run",
                "x-ingate-session-path": path,
                "x-ingate-session-name": "Nightly report",
                "x-ingate-property-env": "staging",
                "x-ingate-user-id": "u-42",
            },
        )
    recording.app.sink.close()
    sign_in(page, recording.url, "ada")
    page.goto(f"{recording.url}/ingate/sessions/agent-run/?org=acme")
    expect(page.locator("h1")).to_contain_text("Nightly report")
    expect(page.get_by_test_id("session-requests")).to_have_text("4")
    expect(page.get_by_test_id("session-duration")).to_contain_text(" s")
    expect(page.get_by_test_id("session-properties")).to_have_text("env=staging")
    groups = page.get_by_test_id("gantt-group")
    expect(groups).to_have_count(3)
    assert [groups.nth(n).get_attribute("data-path") for n in range(3)] == [
        "/agent",
        "/agent/research",
        "/agent/write",
    ]
    rows = page.get_by_test_id("gantt-row")
    expect(rows).to_have_count(4)
    track = rows.nth(0).locator(".gantt-track").bounding_box()
    bars = [rows.nth(n).locator(".gantt-bar").bounding_box() for n in range(4)]
    assert all(bar["width"] >= 1 and track["x"] <= bar["x"] <= track["x"] + track["width"] for bar in bars)
    assert bars[0]["x"] < bars[3]["x"]  # later requests start further right
    screenshots(page, "session")
    rows.nth(0).locator(".gantt-bar").click()
    expect(page.get_by_test_id("chat")).to_contain_text("step /agent")

    page.go_back()
    page.get_by_test_id("session-facts").get_by_role("link", name="u-42").click()
    expect(page.get_by_test_id("user-requests")).to_have_text("4")
    expect(page.get_by_test_id("user-sessions")).to_have_text("1")
    today = page.get_by_test_id("chart-requests").locator("rect").last
    assert today.bounding_box()["height"] > 50  # today's bar, the peak, fills the chart
    screenshots(page, "end-user")


def test_an_admin_makes_a_key_uses_it_and_revokes_it(recording, gateway_key, fake, page):
    sign_in(page, recording.url, "ada")
    page.goto(f"{recording.url}/ingate/?org=acme")
    page.click("header nav >> text=Keys")
    page.fill("input[name=name]", "reporting job")
    page.check("input[name=scopes][value=logs\\:read]")
    page.get_by_test_id("create-key").click()
    plaintext = page.get_by_test_id("new-key-value").inner_text()
    screenshots(page, "keys")

    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices

    page.goto(f"{recording.url}/ingate/keys/?org=acme")  # shown once: the page read again does not have it
    expect(page.get_by_test_id("new-key-value")).to_have_count(0)
    row = page.locator("tr", has_text="reporting job")
    expect(row.get_by_test_id("last-used")).to_contain_text("ago")
    expect(row).to_contain_text("proxy, logs:read")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash")).to_contain_text("reporting job")
    expect(page.locator("tr", has_text="reporting job").get_by_test_id("status")).to_have_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_a_claude_code_session_shows_its_turns(recording, gateway_key, fake, page):
    _, plaintext = gateway_key
    client = anthropic.Anthropic(
        api_key=plaintext,
        base_url=recording.url,
        max_retries=0,
        default_headers={"user-agent": "claude-cli/2.0.14 (external, cli)", "x-claude-code-session-id": "cc-1"},
    )
    tools = [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {}}}]
    ask = {"role": "user", "content": "Why does the build fail?"}
    call = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "exit 1"}]}
    model = "claude-3-5-haiku-latest"
    client.messages.create(model=model, max_tokens=50, tools=tools, messages=[ask])
    client.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": "Title for: build"}])
    client.messages.create(model=model, max_tokens=50, tools=tools, messages=[ask, call, result])
    follow_up = [
        ask,
        call,
        result,
        {"role": "assistant", "content": "A missing file."},
        {"role": "user", "content": "Fix it"},
    ]
    client.messages.create(model=model, max_tokens=50, tools=tools, messages=follow_up)
    recording.app.sink.close()

    sign_in(page, recording.url, "ada")
    page.goto(f"{recording.url}/ingate/sessions/cc-1/?org=acme")
    turns = page.get_by_test_id("turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0)).to_contain_text("Turn 1: Why does the build fail? (3 requests)")
    expect(turns.nth(1)).to_contain_text("Turn 2: Fix it (1 request)")
    expect(page.get_by_test_id("turns").locator(".badge", has_text="side")).to_have_count(1)
    screenshots(page, "claude-code-session")
