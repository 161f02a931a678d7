"""The prompt registry through its API: versions, labels, promotion, rollback, rendering, diffs and roles."""

import pytest

from prompts.models import LabelMove, PromptVersion
from tenancy.models import AuditLog
from tenancy.tests.factories import make_key

URL = "/ingate/api/v1/prompts/"
SYSTEM = {"role": "system", "content": "You are the {{company}} billing assistant. Tone: {{tone}}."}
USER = {"role": "user", "content": "{{question}}"}


@pytest.fixture
def prompt(client_for, world):
    member = client_for(user=world.own.users["member"])
    reply = member.post(
        URL,
        {
            "org": world.own.org.pk,
            "namespace": "support/billing",
            "name": "refunds",
            "description": "Refund questions",
            "tags": ["billing"],
        },
        format="json",
    )
    assert reply.status_code == 201, reply.json()
    return reply.json()


def add_version(api, prompt, tone_line, **extra):
    body = {
        "messages": [{**SYSTEM, "content": SYSTEM["content"] + tone_line}, USER],
        "model": "gpt-4o-mini",
        "parameters": {"temperature": 0.2},
        "commit_message": f"tone {tone_line}",
        **extra,
    }
    reply = api.post(f"{URL}{prompt['id']}/versions/", body, format="json")
    assert reply.status_code == 201, reply.json()
    return reply.json()["number"]


def test_a_team_iterates_promotes_renders_and_rolls_back(client_for, world, prompt):
    member, admin = client_for(user=world.own.users["member"]), client_for(user=world.own.users["admin"])
    assert [add_version(member, prompt, f" v{n}") for n in (1, 2, 3)] == [1, 2, 3]
    assert (
        member.post(f"{URL}{prompt['id']}/labels/", {"name": "staging", "version": 2}, format="json").status_code == 200
    )
    promoted = admin.post(f"{URL}{prompt['id']}/promote/", {"source": "staging", "target": "production"}, format="json")
    assert promoted.status_code == 200 and promoted.json()["version"] == 2
    member.post(f"{URL}{prompt['id']}/labels/", {"name": "staging", "version": 3}, format="json")
    assert (
        admin.post(
            f"{URL}{prompt['id']}/promote/", {"source": "staging", "target": "production"}, format="json"
        ).json()["version"]
        == 3
    )

    rendered = member.post(
        f"{URL}{prompt['id']}/render/",
        {"label": "production", "variables": {"company": "Acme", "tone": "warm", "question": "Where is my refund?"}},
        format="json",
    ).json()
    assert rendered["version"] == 3 and rendered["unused_variables"] == []
    assert rendered["request"]["messages"][0]["content"] == "You are the Acme billing assistant. Tone: warm. v3"
    assert rendered["request"]["model"] == "gpt-4o-mini" and rendered["request"]["temperature"] == 0.2

    rolled = admin.post(f"{URL}{prompt['id']}/rollback/", {"label": "production"}, format="json")
    assert rolled.status_code == 200 and rolled.json()["version"] == 2
    history = member.get(f"{URL}{prompt['id']}/history/").json()
    assert [(m["label"], m["action"], m["from_version"], m["to_version"]) for m in history] == [
        ("production", "rollback", 3, 2),
        ("production", "promote", 2, 3),
        ("staging", "set", 2, 3),
        ("production", "promote", None, 2),
        ("staging", "set", None, 2),
    ]
    assert AuditLog.objects.filter(action__startswith="label_").count() == 5
    assert AuditLog.objects.filter(action="version_create").count() == 3


def test_rolling_back_a_label_that_never_moved_says_so(client_for, world, prompt):
    admin = client_for(user=world.own.users["admin"])
    add_version(admin, prompt, "")
    admin.post(f"{URL}{prompt['id']}/labels/", {"name": "production", "version": 1}, format="json")
    reply = admin.post(f"{URL}{prompt['id']}/rollback/", {"label": "production"}, format="json")
    assert reply.status_code == 400 and "no earlier version" in str(reply.json())


def test_versions_cannot_be_edited_through_any_path(client_for, world, prompt):
    member = client_for(user=world.own.users["member"])
    add_version(member, prompt, "")
    version = PromptVersion.objects.get()
    version.template = "changed"
    with pytest.raises(TypeError):
        version.save()
    with pytest.raises(TypeError):
        PromptVersion.objects.filter(pk=version.pk).update(template="changed")
    assert member.patch(f"{URL}{prompt['id']}/versions/", {"template": "x"}, format="json").status_code == 405
    assert PromptVersion.objects.get().template == ""


@pytest.mark.parametrize(
    "role, version_status, staging_status, production_status",
    [
        ("viewer", 403, 403, 403),
        ("member", 201, 200, 403),
        ("admin", 201, 200, 200),
    ],
)
def test_roles_who_may_version_and_move_which_labels(
    client_for, world, prompt, role, version_status, staging_status, production_status
):
    add_version(client_for(user=world.own.users["member"]), prompt, "")
    api = client_for(user=world.own.users[role])
    assert api.post(f"{URL}{prompt['id']}/versions/", {"template": "hi"}, format="json").status_code == version_status
    assert (
        api.post(f"{URL}{prompt['id']}/labels/", {"name": "staging", "version": 1}, format="json").status_code
        == staging_status
    )
    assert (
        api.post(f"{URL}{prompt['id']}/labels/", {"name": "production", "version": 1}, format="json").status_code
        == production_status
    )
    assert LabelMove.objects.filter(label="production").count() == (1 if production_status == 200 else 0)


def test_gateway_keys_read_with_prompts_read_and_write_with_prompts_write(client_for, world, prompt):
    add_version(client_for(user=world.own.users["member"]), prompt, "")
    _, reader = make_key(app=world.own.app, scopes=["prompts:read"])
    _, writer = make_key(app=world.own.app, scopes=["prompts:write"])
    assert client_for(key=reader).get(f"{URL}{prompt['id']}/").status_code == 200
    assert (
        client_for(key=reader).post(f"{URL}{prompt['id']}/versions/", {"template": "x"}, format="json").status_code
        == 403
    )
    assert (
        client_for(key=writer).post(f"{URL}{prompt['id']}/versions/", {"template": "x"}, format="json").status_code
        == 201
    )
    staging = client_for(key=writer).post(
        f"{URL}{prompt['id']}/labels/", {"name": "staging", "version": 2}, format="json"
    )
    assert staging.status_code == 200
    production = client_for(key=writer).post(
        f"{URL}{prompt['id']}/labels/", {"name": "production", "version": 2}, format="json"
    )
    assert production.status_code == 403
    assert client_for(key=world.own.plaintext).get(URL).status_code == 403  # a proxy-only key
    created = client_for(key=writer).post(
        URL, {"org": world.own.org.pk, "namespace": "keys", "name": "made-by-key"}, format="json"
    )
    assert created.status_code == 201, created.json()
    elsewhere = client_for(key=writer).post(
        URL, {"org": world.other.org.pk, "namespace": "keys", "name": "x"}, format="json"
    )
    assert elsewhere.status_code == 400 and "org" in elsewhere.json()
    assert (
        client_for(key=reader)
        .post(URL, {"org": world.own.org.pk, "namespace": "keys", "name": "y"}, format="json")
        .status_code
        == 403
    )


def test_other_orgs_do_not_see_the_prompt(client_for, world, prompt):
    outsider = client_for(user=world.other.users["owner"])
    assert outsider.get(URL).json()["results"] == []
    assert outsider.get(f"{URL}{prompt['id']}/").status_code == 404


def test_render_names_missing_and_mistyped_variables_and_reports_extra_ones(client_for, world, prompt):
    member = client_for(user=world.own.users["member"])
    add_version(member, prompt, "", variables={"tone": "string"})
    missing = member.post(
        f"{URL}{prompt['id']}/render/", {"version": 1, "variables": {"company": "Acme"}}, format="json"
    )
    assert missing.status_code == 400
    assert "missing variables: tone, question" in missing.json()["variables"][0]
    mistyped = member.post(
        f"{URL}{prompt['id']}/render/",
        {"version": 1, "variables": {"company": "Acme", "tone": 3, "question": "q"}},
        format="json",
    )
    assert mistyped.status_code == 400 and "tone must be a string" in mistyped.json()["variables"][0]
    extra = member.post(
        f"{URL}{prompt['id']}/render/",
        {
            "version": 1,
            "provider": "anthropic",
            "variables": {"company": "Acme", "tone": "dry", "question": "q", "customer": "Bo"},
        },
        format="json",
    ).json()
    assert extra["unused_variables"] == ["customer"]
    assert extra["request"]["system"] == "You are the Acme billing assistant. Tone: dry."
    assert extra["request"]["messages"] == [{"role": "user", "content": "q"}]


def test_bad_versions_get_field_errors(client_for, world, prompt):
    member = client_for(user=world.own.users["member"])
    empty = member.post(f"{URL}{prompt['id']}/versions/", {}, format="json")
    assert empty.status_code == 400 and "messages" in empty.json()
    shapeless = member.post(f"{URL}{prompt['id']}/versions/", {"messages": [{"text": "hi"}]}, format="json")
    assert shapeless.status_code == 400 and "role" in str(shapeless.json())
    untyped = member.post(
        f"{URL}{prompt['id']}/versions/", {"template": "hi", "variables": {"name": "string"}}, format="json"
    )
    assert untyped.status_code == 400 and "variables" in untyped.json()


def test_diff_between_two_versions(client_for, world, prompt):
    member = client_for(user=world.own.users["member"])
    add_version(member, prompt, " v1")
    add_version(member, prompt, " v2")
    diff = member.get(f"{URL}{prompt['id']}/diff/", {"from": 1, "to": 2}).json()["diff"]
    assert "-You are the {{company}} billing assistant. Tone: {{tone}}. v1" in diff
    assert "+You are the {{company}} billing assistant. Tone: {{tone}}. v2" in diff


def test_namespaces_are_listed_created_and_validated(client_for, world, prompt):
    member = client_for(user=world.own.users["member"])
    assert [n["path"] for n in member.get("/ingate/api/v1/prompt-namespaces/").json()["results"]] == ["support/billing"]
    made = member.post(
        "/ingate/api/v1/prompt-namespaces/", {"org": world.own.org.pk, "path": "sales/emea"}, format="json"
    )
    assert made.status_code == 201
    bad = member.post(
        "/ingate/api/v1/prompt-namespaces/", {"org": world.own.org.pk, "path": "Sales EMEA"}, format="json"
    )
    assert bad.status_code == 400 and "path" in bad.json()
    twice = member.post(
        "/ingate/api/v1/prompt-namespaces/", {"org": world.own.org.pk, "path": "sales/emea"}, format="json"
    )
    assert twice.status_code == 400
    viewer = client_for(user=world.own.users["viewer"])
    assert (
        viewer.post(
            "/ingate/api/v1/prompt-namespaces/", {"org": world.own.org.pk, "path": "x"}, format="json"
        ).status_code
        == 403
    )
