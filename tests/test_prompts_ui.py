"""Prompts in the dashboard: prompts and namespaces created from the list, new versions written in the editor
(messages by role, variables, model and parameters), a version's own page, escaped diffs, a version opened in
the playground, label moves; bad input is a form error on the page, never a 500."""

import json

import pytest
from django.test import Client

from prompts import services
from prompts.models import Label, Namespace, Prompt, PromptVersion
from tenancy.audit import Actor

SYSTEM = Actor.system("test")


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def prompt(world):
    prompt = services.prompt_create(actor=SYSTEM, org=world.own.org, namespace="support", name="greeter")
    services.version_create(
        actor=SYSTEM,
        prompt=prompt,
        messages=[{"role": "system", "content": "Greet {{name}}."}, {"role": "user", "content": "Hi"}],
        variables={"name": "string"},
        model="gpt-4o-mini",
        parameters={"temperature": 0.2, "top_p": 0.9},
    )
    return prompt


def test_a_member_creates_a_prompt_in_a_new_namespace_and_lands_in_the_editor(world):
    member = browser(world.own.users["member"])
    reply = member.post(
        "/ingate/prompts/new/?org=own-org",
        {"namespace": "sales/emails", "name": "follow-up", "description": "After a demo", "tags": "email, sales"},
    )
    made = Prompt.objects.get(name="follow-up")
    assert reply.status_code == 302 and reply["Location"] == f"/ingate/prompts/{made.pk}/versions/new/"
    assert (made.org, made.namespace.path, made.tags) == (world.own.org, "sales/emails", ["email", "sales"])
    listing = member.get("/ingate/prompts/", {"org": "own-org"}).content.decode()
    assert "<caption>sales/emails</caption>" in listing and 'data-prompt="sales/emails/follow-up"' in listing


def test_an_empty_namespace_is_listed_with_what_to_do_next(world):
    member = browser(world.own.users["member"])
    member.post("/ingate/prompts/namespaces/new/?org=own-org", {"path": "legal", "description": "Contracts"})
    assert Namespace.objects.filter(org=world.own.org, path="legal").exists()
    listing = member.get("/ingate/prompts/", {"org": "own-org"}).content.decode()
    assert "<caption>legal</caption>" in listing and "No prompts in legal yet." in listing


@pytest.mark.parametrize(
    "url, body, message",
    [
        ("/ingate/prompts/new/", {"namespace": "support", "name": "Bad Name"}, "Use lower-case letters"),
        ("/ingate/prompts/new/", {"namespace": "Bad Space!", "name": "ok"}, "Use lower-case words separated by"),
        ("/ingate/prompts/new/", {"namespace": "support", "name": "greeter"}, "already exists"),
        ("/ingate/prompts/new/", {"namespace": "", "name": "x"}, "This field is required"),
        ("/ingate/prompts/namespaces/new/", {"path": "support"}, "already exists"),
        ("/ingate/prompts/namespaces/new/", {"path": "a//b"}, "Use lower-case words separated by"),
    ],
)
def test_bad_names_are_form_errors_on_the_page(world, prompt, url, body, message):
    before = (Prompt.objects.count(), Namespace.objects.count())
    reply = browser(world.own.users["member"]).post(f"{url}?org=own-org", body)
    assert reply.status_code == 400
    assert message in reply.content.decode()
    assert (Prompt.objects.count(), Namespace.objects.count()) == before


def test_a_viewer_sees_no_create_forms_and_is_refused_when_posting(world, prompt):
    viewer = browser(world.own.users["viewer"])
    listing = viewer.get("/ingate/prompts/", {"org": "own-org"}).content.decode()
    assert 'data-testid="new-prompt"' not in listing and 'data-testid="new-namespace"' not in listing
    assert viewer.post("/ingate/prompts/new/?org=own-org", {"namespace": "x", "name": "y"}).status_code == 403
    assert viewer.post("/ingate/prompts/namespaces/new/?org=own-org", {"path": "x"}).status_code == 403
    assert viewer.get(f"/ingate/prompts/{prompt.pk}/versions/new/").status_code == 403
    assert 'data-testid="new-version"' not in viewer.get(f"/ingate/prompts/{prompt.pk}/").content.decode()


def test_another_orgs_prompts_are_not_found(world, prompt):
    outsider = browser(world.other.users["owner"])
    assert outsider.get(f"/ingate/prompts/{prompt.pk}/versions/new/").status_code == 404
    assert outsider.get(f"/ingate/prompts/{prompt.pk}/v1/").status_code == 404
    assert outsider.post("/ingate/prompts/new/?org=own-org", {"namespace": "x", "name": "y"}).status_code == 404


def test_the_editor_starts_from_the_latest_version_with_its_variables_listed(world, prompt):
    page = browser(world.own.users["member"]).get(f"/ingate/prompts/{prompt.pk}/versions/new/").content.decode()
    assert "Greet {{name}}." in page
    assert 'data-variable="name"' in page and "<option selected>string</option>" in page
    assert 'name="model" value="gpt-4o-mini"' in page and 'name="temperature"' in page and "0.2" in page
    assert "top_p" in page  # the other parameters, as JSON


def test_the_editor_saves_a_new_version_with_messages_by_role_variables_model_and_parameters(world, prompt):
    member = browser(world.own.users["member"])
    reply = member.post(
        f"/ingate/prompts/{prompt.pk}/versions/new/",
        {
            "role": ["system", "user", "assistant"],
            "content": ["You greet {{name}} from {{company}}.", "", "Hello {{ name }}!"],
            "var-name": "string",
            "var-company": "",
            "model": "claude-3-5-haiku-latest",
            "temperature": "0.5",
            "max_tokens": "300",
            "parameters": '{"top_p": 0.8}',
            "commit_message": "Name the company",
        },
    )
    version = prompt.versions.get(number=2)
    assert reply.status_code == 302 and reply["Location"] == f"/ingate/prompts/{prompt.pk}/v2/"
    assert version.messages == [
        {"role": "system", "content": "You greet {{name}} from {{company}}."},
        {"role": "assistant", "content": "Hello {{ name }}!"},
    ]
    assert version.variables == {"name": "string"}
    assert (version.model, version.parameters) == (
        "claude-3-5-haiku-latest",
        {"top_p": 0.8, "temperature": 0.5, "max_tokens": 300},
    )
    assert (version.commit_message, version.author_name) == ("Name the company", "own-member")


@pytest.mark.parametrize(
    "body, message",
    [
        ({"role": ["user"], "content": [""]}, "Give chat messages, a text template, or both."),
        ({"role": ["user"], "content": ["Hi"], "parameters": "{nope"}, "Other parameters are not valid JSON"),
        ({"role": ["user"], "content": ["Hi"], "parameters": "[1]"}, "are a JSON object"),
        ({"role": ["user"], "content": ["Hi"], "var-ghost": "string"}, "Typed variables not used in the prompt: ghost"),
        ({"role": ["user"], "content": ["Hi {{x}}"], "var-x": "colour"}, "Variable types are one of"),
        ({"role": ["robot"], "content": ["Hi"]}, "the role is one of"),
        ({"role": ["user"], "content": ["Hi"], "temperature": "5"}, "less than or equal to 2"),
        ({"role": ["user"], "content": ["Hi"], "model": "m" * 300}, "at most 200 characters"),
    ],
)
def test_bad_versions_are_form_errors_and_keep_what_was_written(world, prompt, body, message):
    reply = browser(world.own.users["member"]).post(f"/ingate/prompts/{prompt.pk}/versions/new/", body)
    page = reply.content.decode()
    assert reply.status_code == 400 and message in page, page[:3000]
    assert body["content"][0] in page  # nothing typed is lost
    assert prompt.versions.count() == 1


def test_a_version_page_shows_its_content_escaped(world, prompt):
    services.version_create(
        actor=SYSTEM, prompt=prompt, messages=[{"role": "user", "content": "<script>alert('x')</script> {{q}}"}]
    )
    page = browser(world.own.users["viewer"]).get(f"/ingate/prompts/{prompt.pk}/v2/").content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page and "<script>alert" not in page
    assert 'data-role="user"' in page and 'data-variable="q"' in page
    assert "?from=1&amp;to=2" in page  # changes since the previous version
    assert browser(world.own.users["viewer"]).get(f"/ingate/prompts/{prompt.pk}/v9/").status_code == 404


def test_the_diff_of_any_two_versions_is_escaped(world, prompt):
    services.version_create(actor=SYSTEM, prompt=prompt, template="<b>bold</b> & {{name}}")
    services.version_create(actor=SYSTEM, prompt=prompt, template="<i>new</i>")
    page = browser(world.own.users["viewer"]).get(f"/ingate/prompts/{prompt.pk}/", {"from": 3, "to": 1}).content
    page = page.decode()
    assert "&lt;i&gt;new&lt;/i&gt;" in page and "<i>new</i>" not in page
    assert "v3" in page and "Greet&nbsp;{{name}}." in page  # HtmlDiff keeps spaces as &nbsp;
    bad = browser(world.own.users["viewer"]).get(f"/ingate/prompts/{prompt.pk}/", {"from": 1, "to": "77"})
    assert bad.status_code == 200 and "has no version 77" in bad.content.decode()


def test_a_version_opens_in_the_playground_prefilled(world, prompt):
    viewer = browser(world.own.users["viewer"])
    version = prompt.versions.get()
    page = viewer.get(f"/ingate/prompts/{prompt.pk}/v1/").content.decode()
    link = f"/ingate/evals/playground/?org=own-org&amp;prompt_version={version.pk}"
    assert link in page
    playground = viewer.get(link.replace("&amp;", "&")).content.decode()
    assert f'<option value="{version.pk}" selected>support/greeter v1</option>' in playground
    assert f'value="{json.dumps({"name": ""}).replace(chr(34), "&quot;")}"' in playground
    assert 'value="gpt-4o-mini" data-testid="model-0"' in playground


def test_label_moves_from_the_page_promote_between_any_environments(world, prompt):
    v2 = services.version_create(actor=SYSTEM, prompt=prompt, template="v2")
    services.label_set(actor=SYSTEM, prompt=prompt, name="development", version=v2)
    member = browser(world.own.users["member"])
    member.post(
        f"/ingate/prompts/{prompt.pk}/labels/", {"action": "promote", "source": "development", "label": "staging"}
    )
    assert Label.objects.get(prompt=prompt, name="staging").version == v2
    member.post(f"/ingate/prompts/{prompt.pk}/labels/", {"action": "set", "label": "canary", "version": "1"})
    assert Label.objects.get(prompt=prompt, name="canary").version.number == 1
    page = member.post(
        f"/ingate/prompts/{prompt.pk}/labels/", {"action": "set", "label": "Not A Slug", "version": "1"}, follow=True
    )
    assert "Use lower-case letters" in page.content.decode()
    refused = member.post(
        f"/ingate/prompts/{prompt.pk}/labels/",
        {"action": "promote", "source": "staging", "label": "production"},
        follow=True,
    )
    assert "may not move the &#x27;production&#x27; label" in refused.content.decode()
    assert not Label.objects.filter(prompt=prompt, name="production").exists()
    assert PromptVersion.objects.filter(prompt=prompt).count() == 2
