"""Prompt pages: versions with labels, buttons only for roles that may use them, label moves, diff, render."""

import pytest
from django.test import Client

from prompts import services
from prompts.models import Label
from tenancy.audit import Actor

SYSTEM = Actor.system("test")


@pytest.fixture
def prompt(world):
    prompt = services.prompt_create(actor=SYSTEM, org=world.own.org, namespace="support", name="greeter")
    for n in (1, 2):
        services.version_create(
            actor=SYSTEM, prompt=prompt, messages=[{"role": "system", "content": f"Hi {{{{name}}}} v{n}"}]
        )
    v1, v2 = prompt.versions.order_by("number")
    services.label_set(actor=SYSTEM, prompt=prompt, name="staging", version=v2)
    services.label_set(actor=SYSTEM, prompt=prompt, name="production", version=v1)
    return prompt


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_list_groups_prompts_by_namespace_with_their_labels(world, prompt):
    page = browser(world.own.users["viewer"]).get("/ingate/prompts/", {"org": "own-org"}).content.decode()
    assert "<caption>support</caption>" in page and "production → v1" in page and "staging → v2" in page


@pytest.mark.parametrize(
    "role, buttons",
    [
        ("viewer", []),
        ("member", ["rollback-staging", "set-v1"]),
        ("admin", ["rollback-staging", "rollback-production", "promote-production", "set-v1"]),
    ],
)
def test_buttons_are_shown_only_to_roles_that_may_use_them(world, prompt, role, buttons):
    page = browser(world.own.users[role]).get(f"/ingate/prompts/{prompt.pk}/").content.decode()
    for button in ("rollback-staging", "rollback-production", "promote-production", "set-v1"):
        assert (f'data-testid="{button}"' in page) == (button in buttons), button


def test_promote_and_rollback_from_the_page(world, prompt):
    admin = browser(world.own.users["admin"])
    admin.post(
        f"/ingate/prompts/{prompt.pk}/labels/", {"action": "promote", "label": "production", "source": "staging"}
    )
    assert Label.objects.get(prompt=prompt, name="production").version.number == 2
    page = admin.post(
        f"/ingate/prompts/{prompt.pk}/labels/", {"action": "rollback", "label": "production"}, follow=True
    )
    assert Label.objects.get(prompt=prompt, name="production").version.number == 1
    assert "production now points at version 1." in page.content.decode()


def test_a_member_posting_a_production_move_is_refused(world, prompt):
    member = browser(world.own.users["member"])
    page = member.post(
        f"/ingate/prompts/{prompt.pk}/labels/",
        {"action": "promote", "label": "production", "source": "staging"},
        follow=True,
    ).content.decode()
    assert "may not move the &#x27;production&#x27; label" in page
    assert Label.objects.get(prompt=prompt, name="production").version.number == 1


def test_diff_and_render_on_the_page(world, prompt):
    member = browser(world.own.users["member"])
    page = member.get(f"/ingate/prompts/{prompt.pk}/", {"from": 1, "to": 2}).content.decode()
    assert 'class="diff"' in page and "v1" in page and "v2" in page
    page = member.post(
        f"/ingate/prompts/{prompt.pk}/render/", {"version": 2, "variables": '{"name": "Ann"}'}, follow=True
    ).content.decode()
    assert "Hi Ann v2" in page
    page = member.post(
        f"/ingate/prompts/{prompt.pk}/render/", {"version": 2, "variables": "{}"}, follow=True
    ).content.decode()
    assert "missing variable: name" in page


def test_another_orgs_prompt_is_not_found(world, prompt):
    assert browser(world.other.users["owner"]).get(f"/ingate/prompts/{prompt.pk}/").status_code == 404


def test_a_versions_cost_column_says_unpriced_when_its_calls_have_no_price_never_zero(world, prompt):
    from django.utils import timezone

    from observability.models import RecordRollup

    v1, v2 = prompt.versions.order_by("number")
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    RecordRollup.objects.create(
        org=world.own.org, bucket=hour, dimension="prompt", value=str(v1.pk), requests=3, unpriced=3, priced=0
    )
    RecordRollup.objects.create(
        org=world.own.org, bucket=hour, dimension="prompt", value=str(v2.pk), requests=2, priced=2, cost="0.5"
    )
    page = browser(world.own.users["viewer"]).get(f"/ingate/prompts/{prompt.pk}/").content.decode()
    rows = {n: page.split(f'<tr data-version="{n}">')[1].split("</tr>")[0] for n in (1, 2)}
    assert 'data-cost="unpriced"' in rows[1] and "$0" not in rows[1]
    assert ">$0.5<" in rows[2]
