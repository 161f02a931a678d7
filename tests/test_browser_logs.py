"""The logs page and the look of the dashboard in Debian's headless Chromium: the search box finds a proxied
request by its answer text, the time range picker narrows the table (presets and a custom range), the export
buttons download what is filtered, dark mode follows the system setting, and a phone gets a folded menu and
tables that scroll inside their card."""

import datetime
import shutil

import openai
import pytest
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from observability.models import BodyMode, ObservabilitySettings, RequestRecord
from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)"
)


@pytest.fixture
def member(gateway_key):
    """A member of org acme, which keeps full bodies. Made before the browser starts (Playwright's sync API
    leaves the thread async, where Django refuses ORM calls)."""
    key, _ = gateway_key
    ObservabilitySettings.objects.create(org=key.org, body_mode=BodyMode.FULL)
    return MembershipFactory(org=key.org, role=Role.MEMBER, user=UserFactory(username="dana")).user


@pytest.fixture
def aged(gateway_key, member):
    """Two records of acme: one from ten minutes ago, one from three days ago."""
    key, _ = gateway_key
    now = timezone.now()
    made = {}
    for name, age in (("recent", datetime.timedelta(minutes=10)), ("old", datetime.timedelta(days=3))):
        made[name] = RequestRecord.objects.create(
            org=key.org,
            app=key.app,
            key=key,
            provider="openai",
            endpoint="chat.completions",
            model=f"{name}-model",
            status=200,
            created_at=now - age,
        )
    return made


@pytest.fixture
def browser(member):
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser, *, width=1280, height=900, scheme="light", downloads=False):
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme=scheme, accept_downloads=downloads
    )
    return context.new_page()


def sign_in(page, base: str) -> None:
    page.goto(f"{base}/")  # `/` leads to the dashboard, which asks to sign in first
    page.fill("#id_username", "dana")
    page.fill("#id_password", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ingate/")


def test_the_search_box_finds_a_request_by_the_text_of_its_answer(recording, gateway_key, fake, browser):
    _, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    asked = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Where is parcel AB-1234?"}]
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}])
    recording.app.sink.close()  # flush now rather than wait for the writer's next round

    page = open_page(browser)
    sign_in(page, recording.url)
    page.goto(f"{recording.url}/ingate/logs/?org=acme")
    expect(page.locator("tr[data-record]")).to_have_count(2)
    page.locator("body").press("/")  # jumps to the search box
    page.keyboard.type("parcel ab-1234")
    page.keyboard.press("Enter")
    expect(page.locator("tr[data-record]")).to_have_count(1)
    expect(page.locator(f'tr[data-record="{asked.headers["x-ingate-request-id"]}"]')).to_be_visible()
    page.fill("input[name=search]", "no such words anywhere")
    page.press("input[name=search]", "Enter")
    expect(page.get_by_test_id("logs-empty")).to_contain_text("No requests match these filters")


def test_the_time_range_picker_narrows_the_table_by_preset_and_by_custom_range(gateway, aged, browser):
    page = open_page(browser)
    sign_in(page, gateway.url)
    page.goto(f"{gateway.url}/ingate/logs/?org=acme")
    expect(page.locator("tr[data-record]")).to_have_count(2)
    expect(page.locator("#custom-range")).to_be_hidden()

    page.select_option("[data-testid=time-range]", "1h")  # a preset applies at once
    page.wait_for_url("**range=1h**")
    expect(page.locator("tr[data-record]")).to_have_count(1)
    expect(page.locator(f'tr[data-record="{aged["recent"].pk}"]')).to_be_visible()

    page.select_option("[data-testid=time-range]", "custom")
    expect(page.locator("#custom-range")).to_be_visible()
    local = "%Y-%m-%dT%H:%M"
    now = timezone.now()
    page.fill("input[name=since]", (now - datetime.timedelta(days=4)).strftime(local))
    page.fill("input[name=until]", (now - datetime.timedelta(days=2)).strftime(local))
    page.click(".searchbar button[type=submit]")
    expect(page.locator("tr[data-record]")).to_have_count(1)
    expect(page.locator(f'tr[data-record="{aged["old"].pk}"]')).to_be_visible()
    assert "range=" not in page.url  # "Custom range…" is the picker's state, not a filter
    expect(page.locator("#custom-range")).to_be_visible()


def test_the_export_buttons_download_what_is_filtered(gateway, aged, browser, tmp_path):
    page = open_page(browser, downloads=True)
    sign_in(page, gateway.url)
    page.goto(f"{gateway.url}/ingate/logs/?org=acme&model=RECENT")
    expect(page.locator("tr[data-record]")).to_have_count(1)
    with page.expect_download() as csv_download:
        page.get_by_test_id("export-csv").click()
    csv_download.value.save_as(tmp_path / "x.csv")
    text = (tmp_path / "x.csv").read_text()
    assert str(aged["recent"].pk) in text and str(aged["old"].pk) not in text
    assert text.splitlines()[0].startswith("id,")
    with page.expect_download() as jsonl_download:
        page.get_by_test_id("export-jsonl").click()
    jsonl_download.value.save_as(tmp_path / "x.jsonl")
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert len(lines) == 1 and str(aged["recent"].pk) in lines[0]


def _background(page) -> tuple[int, int, int]:
    rgb = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    return tuple(int(part) for part in rgb[rgb.index("(") + 1 : -1].split(",")[:3])


def test_dark_mode_follows_the_system_setting(gateway, aged, browser):
    for scheme, dark in (("light", False), ("dark", True)):
        page = open_page(browser, scheme=scheme)
        sign_in(page, gateway.url)
        page.goto(f"{gateway.url}/ingate/logs/?org=acme")
        assert (sum(_background(page)) < 150) == dark, (scheme, _background(page))
        text = page.evaluate("() => getComputedStyle(document.body).color")
        assert (text != "rgb(27, 33, 48)") == dark  # the light theme's ink
        page.context.close()


def test_on_a_phone_the_menu_folds_and_the_logs_table_scrolls_inside_its_card(gateway, aged, browser):
    page = open_page(browser, width=390, height=844)
    sign_in(page, gateway.url)
    page.goto(f"{gateway.url}/ingate/logs/?org=acme")
    nav_link = page.locator("header nav a", has_text="Sessions")
    expect(nav_link).to_be_hidden()
    page.get_by_test_id("nav-toggle").click()
    expect(nav_link).to_be_visible()
    # The filters fold away (none is in use) and open on a tap; the page never scrolls sideways, the table's card does.
    expect(page.locator("input[name=cost_min]")).to_be_hidden()
    page.get_by_test_id("all-filters").locator("> summary").click()
    expect(page.locator("input[name=cost_min]")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    card = page.locator(".table-card")
    assert card.evaluate("el => el.scrollWidth > el.clientWidth")
