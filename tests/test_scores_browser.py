"""In Chromium: a member reviews production requests with the keyboard (a score per key, a comment, a skip)
until the queue is empty, then finds the scored requests in the logs by their score."""

import datetime
import json

import pytest
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from observability.models import RequestBody, RequestRecord
from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory
from tests.test_browser import CHROMIUM, sign_in

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")

QUESTIONS = [("France", "Paris"), ("Peru", "Lima"), ("Chile", "Santiago")]


@pytest.fixture
def requests_to_review(gateway_key):
    """Three requests of acme with their bodies, newest first, and a member (dana) to review them; made before
    the browser starts (Playwright's loop makes this thread async)."""
    key, _ = gateway_key
    MembershipFactory(org=key.org, role=Role.MEMBER, user=UserFactory(username="dana"))
    made = []
    for n, (country, city) in enumerate(QUESTIONS, 1):
        record = RequestRecord.objects.create(
            org=key.org,
            app=key.app,
            provider="openai",
            endpoint="chat.completions",
            model="gpt-4o-mini",
            status=200,
            created_at=timezone.now() - datetime.timedelta(minutes=n),
        )
        RequestBody.objects.create(
            record=record,
            request=json.dumps(
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Capital of {country}?"}]}
            ),
            response=json.dumps({"choices": [{"message": {"role": "assistant", "content": city}}]}),
        )
        made.append(str(record.pk))
    return made


@pytest.fixture
def page(requests_to_review):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        browser.close()


def test_review_requests_one_after_another_with_the_keyboard(recording, requests_to_review, page):
    base = recording.url
    first, second, third = requests_to_review
    sign_in(page, base, "dana")
    page.click("header nav >> text=Review")
    setup = page.get_by_test_id("queue-setup")
    setup.locator("input[name=name]").fill("helpful")
    setup.get_by_role("button", name="Start reviewing").click()

    record = page.get_by_test_id("review-record")
    expect(record).to_have_attribute("data-record", first)
    expect(page.get_by_test_id("left")).to_have_text("3")
    expect(page.locator("[data-role=user] pre")).to_have_text("Capital of France?")
    expect(page.get_by_test_id("review-answer")).to_have_text("Paris")

    page.keyboard.press("4")  # scores 4, and the next request comes up
    expect(page.locator(".flash")).to_contain_text("Scored helpful = 4")
    expect(record).to_have_attribute("data-record", second)
    expect(page.get_by_test_id("left")).to_have_text("2")

    page.keyboard.press("c")  # to the comment; the digits type there now
    page.keyboard.type("Lima is right, 2 words too many")
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    expect(record).to_have_attribute("data-record", third)

    page.keyboard.press("s")  # skipped: not scored, not shown again
    expect(page.get_by_test_id("queue-empty")).to_contain_text("Nothing left to score as helpful")
    expect(page.get_by_test_id("queue-empty")).to_contain_text("(1 skipped)")

    page.get_by_role("link", name="the requests scored so far").click()
    expect(page.locator("tr[data-record]")).to_have_count(2)
    expect(page.locator(f'tr[data-record="{third}"]')).to_have_count(0)
    # A second pass over the poorly scored ones, for their tone: the scores so far are listed under the request.
    page.goto(f"{base}/ingate/review/?org=acme&name=tone&labels=polite,rude&score_name=helpful&score=<3")
    expect(record).to_have_attribute("data-record", second)
    expect(page.get_by_test_id("left")).to_have_text("1")
    scores = page.get_by_test_id("record-scores")
    expect(scores.locator('tr[data-score="helpful"]')).to_contain_text("Lima is right, 2 words too many")
    expect(scores.locator('tr[data-score="helpful"] .badge')).to_have_text("2")
    page.keyboard.press("1")
    expect(page.locator(".flash")).to_contain_text("Scored tone = polite")
