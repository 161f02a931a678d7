"""In a real browser (Debian's headless Chromium): an admin adds a webhook endpoint on the webhooks page, copies
the secret shown once, sends a test event that a receiver on loopback verifies, reads the delivery log and sends
the event again."""

import pytest
from playwright.sync_api import expect, sync_playwright
from standardwebhooks import Webhook

from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory
from tenancy.webhooks import outbox

from .test_browser import CHROMIUM, sign_in
from .webhook_receiver import start_receiver

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)"
)


@pytest.fixture
def receiver():
    r = start_receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def member(gateway_key, settings):
    """The page fixture's user: here an admin of the key's org, made before the browser starts."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = True
    key, _ = gateway_key
    user = MembershipFactory(org=key.org, role=Role.ADMIN, user=UserFactory(username="wes")).user
    yield user
    assert outbox.WORKER.idle.wait(10)


@pytest.fixture
def page(member):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        browser.close()


def test_an_admin_adds_an_endpoint_sends_a_test_event_and_sends_it_again(gateway, member, receiver, page):
    sign_in(page, gateway.url, "wes")
    page.click("header nav >> text=Webhooks")
    expect(page.get_by_test_id("endpoints")).to_contain_text("No endpoints yet")
    form = page.get_by_test_id("endpoint-form")
    form.locator("input[name=url]").fill(receiver.url)
    form.locator("input[name=description]").fill("ops alerts")
    page.get_by_test_id("save-endpoint").click()

    secret = page.get_by_test_id("new-secret").inner_text()
    assert secret.startswith("whsec_")
    row = page.locator("tr[data-endpoint]")
    expect(row).to_contain_text(receiver.url)
    row.get_by_role("button", name="Send test event").click()
    expect(page.locator(".flash")).to_contain_text("Test event queued")
    (got,) = receiver.wait_for(1)
    assert Webhook(secret).verify(got.body, got.headers)["type"] == "webhook.test"

    page.reload()
    log = page.get_by_test_id("deliveries")
    expect(log.locator("tr[data-delivery]")).to_have_attribute("data-status", "delivered")
    expect(log).to_contain_text("HTTP 200")
    log.get_by_role("button", name="Send again").click()
    expect(page.locator(".flash")).to_contain_text("Queued again")
    _, again = receiver.wait_for(2)
    assert again.headers["webhook-id"] == got.headers["webhook-id"]
    expect(page.get_by_test_id("new-secret")).to_have_count(0)  # shown once, never again
