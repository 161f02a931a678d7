"""Prompt versions as people write them (`support/greeter@3`, `@v3`, `@production`, `greeter@3`), resolved only
among the caller's orgs, with errors that say what to write; and the prompt page's own version inputs."""

import pytest
from django.test import Client
from django.utils import timezone

from observability.models import RecordRollup
from prompts import services
from prompts.models import Label
from prompts.selectors import PromptRefError, prompt_version_by_ref, prompt_versions_by_ref
from tenancy.audit import Actor

SYSTEM = Actor.system("test")


def make_prompt(org, namespace, name, versions=2):
    prompt = services.prompt_create(actor=SYSTEM, org=org, namespace=namespace, name=name)
    made = [
        services.version_create(actor=SYSTEM, prompt=prompt, messages=[{"role": "system", "content": f"{name} v{n}"}])
        for n in range(1, versions + 1)
    ]
    return prompt, made


@pytest.fixture
def greeter(world):
    # Another prompt first, so version ids and numbers differ (v1 of greeter is not id 1).
    make_prompt(world.own.org, "sales", "pitch", versions=3)
    prompt, versions = make_prompt(world.own.org, "support", "greeter")
    services.label_set(actor=SYSTEM, prompt=prompt, name="production", version=versions[0])
    return prompt, versions


def resolve(world, ref, org="own"):
    return prompt_version_by_ref(ref=ref, orgs=[getattr(world, org).org])


@pytest.mark.parametrize("ref", ["support/greeter@2", "support/greeter@v2", " Support/Greeter@V2 ", "greeter@2"])
def test_a_version_is_found_by_namespace_name_and_number_as_the_pages_write_it(world, greeter, ref):
    assert resolve(world, ref) == greeter[1][1]


def test_a_label_names_the_version_it_points_at_now(world, greeter):
    prompt, (v1, v2) = greeter
    assert resolve(world, "support/greeter@production") == v1
    services.label_set(actor=SYSTEM, prompt=prompt, name="production", version=v2)
    assert resolve(world, "support/greeter@production") == v2


def test_a_bare_number_is_still_a_version_id_where_no_prompt_is_named(world, greeter):
    v2 = greeter[1][1]
    assert v2.pk != v2.number
    assert resolve(world, str(v2.pk)) == v2 and resolve(world, v2.pk) == v2


@pytest.mark.parametrize(
    "ref, message",
    [
        ("support/greeter@7", "support/greeter has no version 7 (the latest is v2)."),
        ("support/greeter@prod", "support/greeter has no label 'prod'."),
        ("support/nobody@1", "No prompt support/nobody in your organizations."),
        ("support/greeter", "is not a prompt version: write namespace/name@version"),
        ("support/greeter@", "is not a prompt version"),
        ("@3", "is not a prompt version"),
        ("support/gr eeter@1", "is not a prompt version"),
        ("999999", "No prompt version with id 999999 in your organizations"),
        ("99999999999999999999999", "No prompt version with id"),
        ("support/greeter@99999999999", "has no version 99999999999"),
    ],
)
def test_a_reference_that_names_nothing_says_what_is_wrong(world, greeter, ref, message):
    with pytest.raises(PromptRefError) as error:
        resolve(world, ref)
    assert message in str(error.value)


def test_a_short_name_shared_by_two_prompts_is_ambiguous_and_the_error_names_both(world, greeter):
    make_prompt(world.own.org, "billing", "greeter", versions=1)
    with pytest.raises(PromptRefError) as error:
        resolve(world, "greeter@1")
    assert "Several prompts are named greeter (billing/greeter, support/greeter)" in str(error.value)
    assert resolve(world, "billing/greeter@1").prompt.namespace.path == "billing"


def test_another_orgs_prompt_reads_as_unknown_by_ref_and_by_id(world, greeter):
    v1 = greeter[1][0]
    for ref in ("support/greeter@1", str(v1.pk)):
        with pytest.raises(PromptRefError, match="in your organizations"):
            resolve(world, ref, org="other")


def test_the_same_ref_in_two_of_the_callers_orgs_gives_one_version_in_each(world, greeter):
    _, (theirs,) = make_prompt(world.other.org, "support", "greeter", versions=1)
    found = set(prompt_versions_by_ref(ref="support/greeter@1", orgs=[world.own.org, world.other.org]))
    assert found == {greeter[1][0], theirs}
    with pytest.raises(PromptRefError, match="several of your organizations"):
        prompt_version_by_ref(ref="support/greeter@1", orgs=[world.own.org, world.other.org])


def test_where_a_prompt_is_given_a_bare_number_or_label_is_its_own(world, greeter):
    prompt, (v1, v2) = greeter
    assert prompt_version_by_ref(prompt=prompt, ref="2") == v2
    assert prompt_version_by_ref(prompt=prompt, ref="v1") == v1
    assert prompt_version_by_ref(prompt=prompt, ref="production") == v1
    assert prompt_version_by_ref(prompt=prompt, ref="support/greeter@2") == v2
    with pytest.raises(PromptRefError, match="is not a version of support/greeter"):
        prompt_version_by_ref(prompt=prompt, ref="sales/pitch@2")


# --- the prompt page --------------------------------------------------------------------------------


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_diff_of_a_version_that_is_not_a_number_is_an_error_on_the_page_not_a_500(world, greeter):
    prompt, _ = greeter
    page = browser(world.own.users["member"]).get(f"/ingate/prompts/{prompt.pk}/", {"from": "abc", "to": "2"})
    assert page.status_code == 200
    assert "support/greeter has no label &#x27;abc&#x27;." in page.content.decode()
    page = browser(world.own.users["member"]).get(f"/ingate/prompts/{prompt.pk}/", {"from": "v1", "to": "production"})
    assert 'class="diff"' in page.content.decode()


def test_pointing_a_label_at_a_version_that_does_not_exist_is_a_message_not_a_500(world, greeter):
    prompt, _ = greeter
    page = browser(world.own.users["member"]).post(
        f"/ingate/prompts/{prompt.pk}/labels/", {"action": "set", "label": "staging", "version": "x"}, follow=True
    )
    assert page.status_code == 200 and "support/greeter has no label &#x27;x&#x27;." in page.content.decode()
    assert not Label.objects.filter(prompt=prompt, name="staging").exists()


def test_the_requests_count_of_a_version_links_to_its_logs_by_reference(world, greeter):
    prompt, (v1, _) = greeter
    RecordRollup.objects.create(
        org=world.own.org,
        bucket=timezone.now().replace(minute=0, second=0, microsecond=0),
        dimension="prompt",
        value=str(v1.pk),
        requests=3,
    )
    page = browser(world.own.users["viewer"]).get(f"/ingate/prompts/{prompt.pk}/").content.decode()
    assert (
        '/ingate/logs/?org=own-org&amp;prompt_version=support/greeter%40v1" title="The requests of support/greeter@v1">3</a>'
        in page
    )
