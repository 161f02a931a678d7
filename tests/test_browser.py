"""In a real browser (Debian's headless Chromium): a request proxied through the gateway shows up on the
dashboard with its cost, the charts render, and the live tail shows the next one; prompts are promoted and
rolled back; the playground streams two models side by side; an eval queued from the UI runs to the end
while the page follows it, and its comparison shows the improvement."""

import shutil

import openai
import pytest
from playwright.sync_api import expect, sync_playwright

from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)"
)


@pytest.fixture
def member(gateway_key):
    """A member of the key's org. Made before the browser starts: Playwright's sync API runs an event loop in
    this thread, after which Django treats the thread as async and refuses ORM calls."""
    key, _ = gateway_key
    return MembershipFactory(org=key.org, role=Role.MEMBER, user=UserFactory(username="dana")).user


@pytest.fixture
def page(member):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        yield context.new_page()
        browser.close()


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/ingate/")  # redirected to the sign-in page
    page.fill("#id_username", username)
    page.fill("#id_password", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ingate/")


def fill_two_target_run(page, base: str) -> None:
    """The new-run form of org acme, filled in: the capitals prompt on gpt-4o-mini against a raw prompt on
    gpt-4o, one call at a time (queue it with the `queue` button)."""
    page.goto(f"{base}/ingate/evals/?org=acme")
    page.get_by_test_id("new-run").click()
    page.select_option("select[name=t0-prompt_version]", label="geo/capital v1 (gpt-4o-mini)")
    page.fill("input[name=t1-model]", "gpt-4o")
    page.fill("input[name=t1-system]", "Answer with a city. Capital of {{country}}?")
    page.fill("input[name=concurrency]", "1")


def test_a_proxied_request_appears_on_the_dashboard_with_its_cost_and_charts(recording, gateway_key, fake, page):
    _, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three four"}],
        extra_headers={"x-ingate-session-id": "browser-session"},
    )
    request_id = raw.headers["x-ingate-request-id"]
    recording.app.sink.close()  # flush now rather than wait for the writer's next round

    sign_in(page, recording.url, "dana")
    page.goto(f"{recording.url}/ingate/?org=acme")
    expect(page.get_by_test_id("total-requests")).to_have_text("1")
    expect(page.get_by_test_id("total-cost")).to_have_text("$0.0000036")  # 4 x $0.15/M + 5 x $0.60/M
    rendered = page.evaluate(
        "() => ['chart-requests', 'chart-cost', 'chart-tokens', 'chart-latency'].map("
        "id => window.ingateCharts && window.ingateCharts[id] ? window.ingateCharts[id].data.datasets[0].data.length : 0)"
    )
    assert all(points >= 1 for points in rendered), rendered
    assert page.locator("#chart-requests").bounding_box()["height"] > 100

    page.click("text=Logs")
    row = page.locator(f'tr[data-record="{request_id}"]')
    expect(row).to_contain_text("gpt-4o-mini-2024-07-18")
    expect(row).to_contain_text("browser-session")
    row.locator("a").first.click()
    expect(page.get_by_test_id("record-cost")).to_have_text("$0.0000036")


def test_the_live_page_shows_new_requests_as_they_happen(recording, gateway_key, fake, page):
    _, plaintext = gateway_key
    sign_in(page, recording.url, "dana")
    page.goto(f"{recording.url}/ingate/live/?org=acme")
    expect(page.locator("#live-state")).to_have_text("connected")
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    expect(page.locator(f'#live tr[data-record="{raw.headers["x-ingate-request-id"]}"]')).to_contain_text("gpt-4o-mini")


@pytest.fixture
def release_manager(gateway_key):
    """An org admin and a prompt with production on v1 and staging on v2 (made before the browser starts)."""
    from prompts import services
    from tenancy.audit import Actor

    key, _ = gateway_key
    MembershipFactory(org=key.org, role=Role.ADMIN, user=UserFactory(username="olga"))
    system = Actor.system("test")
    prompt = services.prompt_create(actor=system, org=key.org, namespace="support", name="greeter")
    v1 = services.version_create(actor=system, prompt=prompt, template="Hello v1")
    v2 = services.version_create(actor=system, prompt=prompt, template="Hello v2")
    services.label_set(actor=system, prompt=prompt, name="production", version=v1)
    services.label_set(actor=system, prompt=prompt, name="staging", version=v2)
    return prompt


def test_promote_and_roll_back_a_prompt_in_the_browser(recording, release_manager, page):
    sign_in(page, recording.url, "olga")
    page.goto(f"{recording.url}/ingate/prompts/?org=acme")
    page.click("text=greeter")
    expect(page.get_by_test_id("label-production")).to_have_text("v1")
    page.get_by_test_id("promote-production").click()
    expect(page.get_by_test_id("label-production")).to_have_text("v2")
    expect(page.locator(".flash")).to_contain_text("production now points at version 2")
    page.get_by_test_id("rollback-production").click()
    expect(page.get_by_test_id("label-production")).to_have_text("v1")
    expect(page.locator(".timeline")).to_contain_text("production rollback: v2 → v1")


@pytest.fixture
def capitals(gateway_key, fake):
    """A dataset and two prompt versions for the eval pages; the fake answers per model (made before the
    browser starts, like every fixture here)."""
    from evals import services as evals
    from evals.transfer import clean_item
    from prompts import services as prompts
    from tenancy.audit import Actor

    key, _ = gateway_key
    system = Actor.system("test")
    fake.answers = lambda model, text: "Paris" if model == "gpt-4o" or "France" in text else "Not sure"
    evals.dataset_create(
        actor=system,
        org=key.org,
        name="capitals",
        items=[
            clean_item({"variables": {"country": c}, "expected": city})
            for c, city in (("France", "Paris"), ("Chile", "Paris"))
        ],
    )
    prompt = prompts.prompt_create(actor=system, org=key.org, namespace="geo", name="capital")
    prompts.version_create(
        actor=system,
        prompt=prompt,
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Capital of {{country}}?"}],
    )
    return prompt


def test_the_playground_streams_two_models_side_by_side(recording, member, fake, page):
    fake.answers = lambda model, text: {
        "gpt-4o-mini": "mini says hello there friend",
        "claude-3-5-haiku-latest": "haiku answers with six words",
    }.get(model)
    fake.defaults["x-fake-chunks"] = 6
    fake.defaults["x-fake-chunk-delay-ms"] = 120
    sign_in(page, recording.url, "dana")
    page.goto(f"{recording.url}/ingate/evals/playground/?org=acme")
    page.get_by_test_id("user").fill("Say hello")
    # Note every change to each column's text with its time: streaming shows as several growing values,
    # side by side as overlapping time spans.
    page.evaluate("""() => {
      window.seen = {0: [], 1: []};
      for (const n of [0, 1]) {
        const el = document.querySelector(`[data-testid=answer-${n}]`);
        new MutationObserver(() => window.seen[n].push([performance.now(), el.textContent])).observe(el, {childList: true, characterData: true, subtree: true});
      }
    }""")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("answer-0")).to_have_text("mini says hello there friend")
    expect(page.get_by_test_id("answer-1")).to_have_text("haiku answers with six words")
    expect(page.get_by_test_id("meta-0")).to_contain_text("5 out")
    expect(page.get_by_test_id("meta-1")).to_contain_text("5 out")
    expect(page.get_by_test_id("meta-0")).to_contain_text("$")
    seen = page.evaluate("() => window.seen")
    grown = {n: [text for _, text in seen[n] if text] for n in ("0", "1")}
    assert all(len(set(values)) >= 3 for values in grown.values()), grown  # arrived in pieces
    first = {n: next(t for t, text in seen[n] if text) for n in ("0", "1")}
    last = {n: seen[n][-1][0] for n in ("0", "1")}
    assert first["1"] < last["0"] and first["0"] < last["1"], (first, last)  # at the same time


def test_queue_an_eval_from_the_ui_and_watch_it_complete(recording, member, capitals, fake, page, settings):
    import threading

    from evals import runner
    from evals.models import EvalRun, RunStatus

    settings.CELERY_TASK_ALWAYS_EAGER = False  # a worker thread below plays the Celery worker
    fake.defaults["x-fake-delay-ms"] = 300  # slow enough to see the run in progress
    stop = threading.Event()

    def worker():  # polls for queued runs like a worker consuming the queue would get them
        from django.db import connection

        while not stop.is_set():
            for pk in EvalRun.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True):
                runner.execute(pk)
            stop.wait(0.2)
        connection.close()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        sign_in(page, recording.url, "dana")
        fill_two_target_run(page, recording.url)
        page.get_by_test_id("queue").click()
        expect(page.locator(".flash")).to_contain_text("queued: 4 calls")
        expect(page.get_by_test_id("status")).to_have_text("Running")  # pushed over the websocket as it happens
        expect(page.get_by_test_id("status")).to_have_text("Completed", timeout=20000)
        expect(page.get_by_test_id("counts")).to_have_text("4 / 4")
        summary = page.get_by_test_id("summary")
        expect(summary).to_contain_text("geo/capital@1")
        expect(summary.locator("tr").nth(1)).to_contain_text("50%")
        expect(summary.locator("tr").nth(2)).to_contain_text("100%")
        page.get_by_test_id("compare-1").click()
        expect(page.get_by_test_id("counts")).to_contain_text("1 improvements")
        expect(page.locator("tr[data-change=improvement]")).to_contain_text("country=Chile")
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def route_admin(gateway_key):
    """An admin of org acme, who may manage its routes (made before the browser starts)."""
    key, _ = gateway_key
    return MembershipFactory(org=key.org, role=Role.ADMIN, user=UserFactory(username="rhea")).user


def test_create_a_route_with_two_targets_on_the_routes_page(gateway, route_admin, page):
    sign_in(page, gateway.url, "rhea")
    page.goto(f"{gateway.url}/ingate/?org=acme")
    page.click("header nav >> text=Routes")
    expect(page.get_by_test_id("routes")).to_contain_text("No routes yet")
    form = page.get_by_test_id("route-form")
    form.locator("input[name=name]").fill("smart")
    form.locator("select[name=strategy]").select_option("fallback")
    form.locator("input[name=retry_on_statuses]").fill("400")
    page.select_option("select[name=t-0-provider]", "openai")
    page.fill("input[name=t-0-model]", "gpt-4o")
    page.select_option("select[name=t-1-provider]", "anthropic")
    page.fill("input[name=t-1-model]", "claude-3-5-haiku-latest")
    page.fill("input[name=t-1-params]", '{"max_tokens": 512}')
    page.get_by_test_id("save-route").click()

    expect(page.locator(".flash")).to_contain_text("Route smart saved.")
    row = page.locator('tr[data-route="smart"]')
    expect(row.locator("li")).to_have_count(2)
    expect(row.locator("li").nth(0)).to_contain_text("openai/gpt-4o")
    expect(row.locator("li").nth(1)).to_contain_text("anthropic/claude-3-5-haiku-latest")
    expect(row).to_contain_text("400")

    # Opened again for editing, the form holds what was saved, in order.
    page.get_by_test_id("edit-smart").click()
    expect(page.locator("input[name=t-1-model]")).to_have_value("claude-3-5-haiku-latest")
    expect(page.locator("select[name=t-0-provider]")).to_have_value("openai")


@pytest.fixture
def budget_admin(gateway_key):
    """An admin of org acme, and a request it already paid for (made before the browser starts)."""
    from django.utils import timezone

    from observability.models import RequestRecord
    from observability.rollups import apply

    key, _ = gateway_key
    record = RequestRecord.objects.create(
        org=key.org,
        app=key.app,
        key=key,
        provider="openai",
        endpoint="chat.completions",
        model="gpt-4o-mini",
        status=200,
        usage_source="reported",
        cost_total="4.00",
        created_at=timezone.now(),
    )
    apply([record])
    return MembershipFactory(org=key.org, role=Role.ADMIN, user=UserFactory(username="bea")).user


def test_create_a_budget_on_the_budgets_page_and_see_its_spend_and_bar(gateway, budget_admin, page):
    sign_in(page, gateway.url, "bea")
    page.goto(f"{gateway.url}/ingate/?org=acme")
    page.click("header nav >> text=Budgets")
    expect(page.get_by_test_id("budgets")).to_contain_text("No budgets yet")
    form = page.get_by_test_id("limit-form")
    form.locator("input[name=name]").fill("App cap")
    form.locator("select[name=scope]").select_option("app")
    form.locator("select[name=app]").select_option(index=1)
    form.locator("input[name=amount_usd]").fill("5")
    form.locator("select[name=period]").select_option("day")
    form.locator("input[name=thresholds]").fill("50, 100")
    page.get_by_test_id("save-limit").click()

    expect(page.locator(".flash")).to_contain_text("Budget App cap saved.")
    row = page.locator("tr[data-budget]")
    expect(row).to_contain_text("$4.00")  # what the app's requests cost today
    bar = row.locator(".bar")
    expect(bar).to_have_attribute("data-level", "warn")  # 80 %: past the 50 % alert
    width = bar.locator("span").evaluate(
        "el => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect().width"
    )
    assert 0.75 < width < 0.85
