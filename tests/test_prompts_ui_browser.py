"""In Chromium: an org admin creates a prompt, writes two versions in the editor (the variables list follows
the typing), reads a version, diffs the two, points staging and production at them, promotes staging to
production, and opens the version in the playground prefilled."""

import pytest
from playwright.sync_api import expect, sync_playwright

from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory
from tests.test_browser import CHROMIUM, sign_in

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")


@pytest.fixture
def page(gateway_key):
    """An org admin (olga) of acme, made before the browser starts (Playwright's loop makes this thread async)."""
    key, _ = gateway_key
    MembershipFactory(org=key.org, role=Role.ADMIN, user=UserFactory(username="olga"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        browser.close()


def variables(page) -> list[str]:
    return page.locator("#variables tbody tr").evaluate_all("rows => rows.map(r => r.dataset.variable)")


def test_write_a_prompt_in_the_editor_and_promote_it_to_production(recording, page):
    base = recording.url
    sign_in(page, base, "olga")
    page.goto(f"{base}/ingate/prompts/?org=acme")
    expect(page.locator(".empty")).to_contain_text("Create the first one above")

    form = page.get_by_test_id("new-prompt")
    form.locator("input[name=namespace]").fill("support")
    form.locator("input[name=name]").fill("welcome")
    form.locator("input[name=description]").fill("First message to a new customer")
    form.get_by_role("button", name="New prompt").click()
    expect(page.locator(".flash")).to_contain_text("Created support/welcome")

    # The editor: a system and a user message to start with; variables are listed as they are typed.
    editor = page.get_by_test_id("editor")
    system, user = editor.locator("textarea[name=content]").all()
    system.fill("You welcome {{customer}} to {{ product }}.")
    expect(page.locator("#variables tbody tr")).to_have_count(2)
    assert variables(page) == ["customer", "product"]
    page.select_option("select[name=var-customer]", "string")
    user.fill("Hi, I am {{customer}}.")
    page.get_by_test_id("add-message").click()
    editor.locator("textarea[name=content]").nth(2).fill("Welcome! Ask me about {{plan}}.")
    page.locator("[data-message]").nth(2).locator("select[name=role]").select_option("assistant")
    expect(page.locator("#variables tbody tr")).to_have_count(3)
    page.locator("[data-message]").nth(2).get_by_role("button", name="Remove this message").click()
    expect(page.locator("#variables tbody tr")).to_have_count(2)
    assert page.locator("select[name=var-customer]").input_value() == "string"  # kept while the list changed
    editor.locator("input[name=model]").fill("gpt-4o-mini")
    editor.locator("input[name=temperature]").fill("0.3")
    editor.locator("input[name=commit_message]").fill("First draft")
    page.get_by_test_id("save-version").click()

    expect(page.locator("h1")).to_contain_text("support/welcome · v1")
    expect(page.get_by_test_id("message")).to_have_count(2)
    expect(page.get_by_test_id("message").first).to_have_text("You welcome {{customer}} to {{ product }}.")
    expect(page.get_by_test_id("version-model")).to_have_text("gpt-4o-mini")

    # A second version, started from the first.
    page.get_by_test_id("edit-from").click()
    page.locator("textarea[name=content]").first.fill("You warmly welcome {{customer}} to {{ product }}.")
    page.locator("input[name=commit_message]").fill("Warmer")
    page.get_by_test_id("save-version").click()
    expect(page.locator("h1")).to_contain_text("v2")

    # Its changes since v1, side by side.
    page.get_by_role("link", name="Changes since v1").click()
    expect(page.locator(".diff table.diff")).to_contain_text("warmly")

    # staging on v2, production on v1, then staging promoted to production.
    page.locator('tr[data-version="2"] input[name=label]').fill("staging")
    page.get_by_test_id("set-v2").click()
    expect(page.get_by_test_id("label-staging")).to_have_text("v2")
    page.locator('tr[data-version="1"] input[name=label]').fill("production")
    page.get_by_test_id("set-v1").click()
    expect(page.get_by_test_id("label-production")).to_have_text("v1")
    page.get_by_test_id("promote-production").click()
    expect(page.get_by_test_id("label-production")).to_have_text("v2")
    expect(page.locator(".timeline")).to_contain_text("production promote: v1 → v2")

    # v2 in the playground, its variables ready to fill in and its model in the first column.
    page.get_by_test_id("view-v2").click()
    page.get_by_test_id("open-playground").click()
    expect(page.locator("select[name=prompt_version] option:checked")).to_have_text("support/welcome v2")
    expect(page.locator("input[name=variables]")).to_have_value('{"customer": "", "product": ""}')
    expect(page.get_by_test_id("model-0")).to_have_value("gpt-4o-mini")


def test_a_bad_version_shows_its_errors_and_keeps_what_was_typed(recording, page):
    base = recording.url
    sign_in(page, base, "olga")
    page.goto(f"{base}/ingate/prompts/?org=acme")
    page.get_by_test_id("new-prompt").locator("input[name=namespace]").fill("Bad Space")
    page.get_by_test_id("new-prompt").locator("input[name=name]").fill("welcome")
    page.get_by_role("button", name="New prompt").click()
    expect(page.get_by_test_id("prompt-errors")).to_contain_text("Use lower-case words separated by '/'")
    page.get_by_test_id("new-prompt").locator("input[name=namespace]").fill("support")
    page.get_by_role("button", name="New prompt").click()
    page.locator("textarea[name=content]").first.fill("Hello {{name}}")
    page.locator("textarea[name=parameters]").fill("{not json")
    page.get_by_test_id("save-version").click()
    expect(page.get_by_test_id("editor-errors")).to_contain_text("Other parameters are not valid JSON")
    expect(page.locator("textarea[name=content]").first).to_have_value("Hello {{name}}")
    expect(page.locator('#variables tr[data-variable="name"]')).to_have_count(1)
