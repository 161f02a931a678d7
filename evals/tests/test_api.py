"""The evals API: datasets and their immutable versions (items, import, export, items from request records),
eval runs queued through the gateway to the fake provider, comparisons, the evaluator catalogue, and who may
do what (roles, and gateway keys with the `evals:run` scope)."""

import json

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile

from evals import services, transfer
from evals.models import Dataset, EvalRun
from evals.tests import scripted
from evals.tests.waiting import finished
from evals.transfer import clean_item
from observability.models import RequestBody, RequestRecord
from tenancy.audit import Actor
from tenancy.tests.factories import make_key

API = "/ingate/api/v1/"
DATASETS = API + "datasets/"
RUNS = API + "eval-runs/"
SYSTEM = Actor.system("test")
CAPITALS = [{"input": "Capital of France?", "expected": "Paris"}, {"input": "Capital of Peru?", "expected": "Lima"}]


def make_dataset(org, name="capitals", items=CAPITALS) -> Dataset:
    return services.dataset_create(actor=SYSTEM, org=org, name=name, items=[clean_item(i) for i in items])


def streamed(response) -> bytes:
    """A streamed response's body. The export streams from an async generator (as it is served under ASGI),
    so the sync test client's response is read on an event loop: `getvalue()` and `b"".join(...)` cannot."""
    assert response.streaming and response.is_async

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(read)()


def upload(name: str, text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="application/octet-stream")


@pytest.fixture
def member(client_for, world):
    return client_for(user=world.own.users["member"])


@pytest.fixture
def capitals(world) -> Dataset:
    return make_dataset(world.own.org)


# --- datasets -----------------------------------------------------------------------------------------


def test_creating_a_dataset_with_items_makes_version_1(member, world):
    reply = member.post(
        DATASETS, {"org": world.own.org.pk, "name": "capitals", "description": "geo", "items": CAPITALS}, format="json"
    )
    assert reply.status_code == 201, reply.json()
    assert (reply.json()["latest"]["number"], reply.json()["latest"]["item_count"]) == (1, 2)
    items = member.get(f"{DATASETS}{reply.json()['id']}/items/").json()
    assert [(i["messages"], i["expected"]) for i in items] == [
        ([{"role": "user", "content": "Capital of France?"}], "Paris"),
        ([{"role": "user", "content": "Capital of Peru?"}], "Lima"),
    ]


def test_a_second_dataset_with_the_same_name_is_a_name_error(member, world, capitals):
    reply = member.post(DATASETS, {"org": world.own.org.pk, "name": "capitals"}, format="json")
    assert reply.status_code == 400 and "already exists" in str(reply.json()["name"])
    assert Dataset.objects.filter(name="capitals").count() == 1


def test_a_bad_item_is_reported_by_its_index_and_nothing_is_created(member, world):
    reply = member.post(
        DATASETS,
        {"org": world.own.org.pk, "name": "broken", "items": [CAPITALS[0], {"expected": "Lima"}]},
        format="json",
    )
    assert reply.status_code == 400
    assert "needs `input`, `messages` or `variables`" in str(reply.json()["items.1"])
    assert "items.0" not in reply.json() and not Dataset.objects.filter(name="broken").exists()


def test_another_orgs_datasets_are_invisible(client_for, world, capitals):
    outsider = client_for(user=world.other.users["owner"])
    make_dataset(world.other.org, name="theirs")
    assert [d["name"] for d in outsider.get(DATASETS).json()["results"]] == ["theirs"]
    assert outsider.get(f"{DATASETS}{capitals.pk}/").status_code == 404
    assert outsider.get(f"{DATASETS}{capitals.pk}/items/").status_code == 404
    assert outsider.post(f"{DATASETS}{capitals.pk}/items/", {"items": CAPITALS}, format="json").status_code == 404


def test_adding_items_makes_version_2_and_leaves_version_1_as_it_was(member, capitals):
    added = member.post(
        f"{DATASETS}{capitals.pk}/items/",
        {"items": [{"input": "Capital of Japan?", "expected": "Tokyo"}], "message": "Japan"},
        format="json",
    )
    assert added.status_code == 201, added.json()
    assert (added.json()["number"], added.json()["item_count"], added.json()["message"]) == (2, 3, "Japan")
    latest = member.get(f"{DATASETS}{capitals.pk}/items/").json()
    first = member.get(f"{DATASETS}{capitals.pk}/items/", {"version": 1}).json()
    assert [i["expected"] for i in latest] == ["Paris", "Lima", "Tokyo"]
    assert [i["expected"] for i in first] == ["Paris", "Lima"]
    assert [i["key"] for i in latest[:2]] == [i["key"] for i in first]  # the same items, by key, across versions
    assert member.get(f"{DATASETS}{capitals.pk}/items/", {"version": 9}).status_code == 404
    assert [v["number"] for v in member.get(f"{DATASETS}{capitals.pk}/versions/").json()] == [2, 1]


def test_removing_items_by_key_makes_a_version_without_them(member, capitals):
    paris = member.get(f"{DATASETS}{capitals.pk}/items/").json()[0]
    removed = member.post(f"{DATASETS}{capitals.pk}/remove-items/", {"keys": [paris["key"]]}, format="json")
    assert removed.status_code == 201 and (removed.json()["number"], removed.json()["item_count"]) == (2, 1)
    assert [i["expected"] for i in member.get(f"{DATASETS}{capitals.pk}/items/").json()] == ["Lima"]
    assert capitals.versions.get(number=1).item_count == 2


def test_importing_jsonl_appends_and_csv_replaces(member, capitals):
    jsonl = (
        '{"input": "Capital of Japan?", "expected": "Tokyo"}\n\n{"variables": {"country": "Chad"}, "tags": ["hard"]}\n'
    )
    appended = member.post(
        f"{DATASETS}{capitals.pk}/import/", {"file": upload("more.jsonl", jsonl)}, format="multipart"
    )
    assert appended.status_code == 201, appended.json()
    assert (appended.json()["number"], appended.json()["item_count"], appended.json()["message"]) == (
        2,
        4,
        "Imported more.jsonl",
    )

    table = "input,expected\nCapital of Kenya?,Nairobi\n"
    replaced = member.post(
        f"{DATASETS}{capitals.pk}/import/", {"file": upload("kenya.csv", table), "mode": "replace"}, format="multipart"
    )
    assert replaced.status_code == 201 and (replaced.json()["number"], replaced.json()["item_count"]) == (3, 1)
    assert [i["expected"] for i in member.get(f"{DATASETS}{capitals.pk}/items/").json()] == ["Nairobi"]
    assert [i["tags"] for i in member.get(f"{DATASETS}{capitals.pk}/items/", {"version": 2}).json()] == [
        [],
        [],
        [],
        ["hard"],
    ]


def test_a_file_with_bad_lines_names_each_line_and_imports_nothing(member, capitals):
    jsonl = '{"input": "fine"}\n{"input": 3}\n{"input": "fine too"}\n{not json\n'
    reply = member.post(f"{DATASETS}{capitals.pk}/import/", {"file": upload("bad.jsonl", jsonl)}, format="multipart")
    assert reply.status_code == 400
    errors = reply.json()["file"]
    assert (
        len(errors) == 2
        and errors[0].startswith("line 2: input must be")
        and errors[1].startswith("line 4: not valid JSON")
    )
    assert list(capitals.versions.values_list("number", flat=True)) == [1]


def test_a_file_over_the_import_limit_is_refused_before_it_is_read(member, capitals, settings):
    settings.INGATE_EVAL_MAX_IMPORT_BYTES = 40
    jsonl = '{"input": "Capital of Japan?", "expected": "Tokyo"}\n'
    reply = member.post(f"{DATASETS}{capitals.pk}/import/", {"file": upload("big.jsonl", jsonl)}, format="multipart")
    assert reply.status_code == 400
    assert reply.json()["file"] == [
        f"the file is {len(jsonl)} bytes; imports take up to 40 (INGATE_EVAL_MAX_IMPORT_BYTES): "
        "split it into several imports"
    ]
    assert capitals.versions.count() == 1


@pytest.mark.parametrize("kind, content_type", [("jsonl", "application/x-ndjson"), ("csv", "text/csv")])
def test_an_export_reads_back_as_the_same_items(member, capitals, kind, content_type):
    member.post(
        f"{DATASETS}{capitals.pk}/items/",
        {
            "items": [
                {
                    "variables": {"country": "Chad"},
                    "expected": "N'Djamena",
                    "tags": ["hard", "africa"],
                    "metadata": {"source": "atlas"},
                },
            ]
        },
        format="json",
    )
    reply = member.get(f"{DATASETS}{capitals.pk}/export/", {"version": 2, "export_format": kind})
    assert reply.status_code == 200 and reply["Content-Type"].startswith(content_type)
    assert reply["Content-Disposition"] == f'attachment; filename="capitals-v2.{kind}"'
    exported = transfer.parse(streamed(reply), f"capitals-v2.{kind}")
    stored = member.get(f"{DATASETS}{capitals.pk}/items/", {"version": 2}).json()
    assert [item.as_dict() for item in exported] == [
        transfer.ItemData(
            messages=i["messages"],
            variables=i["variables"],
            expected=i["expected"],
            metadata=i["metadata"],
            tags=i["tags"],
            key=i["key"],
        ).as_dict()
        for i in stored
    ]
    assert len(exported) == 3 and exported[2].tags == ["hard", "africa"]
    assert member.get(f"{DATASETS}{capitals.pk}/export/", {"export_format": "xlsx"}).status_code == 400


def test_the_export_file_name_survives_quotes_and_accents_in_the_dataset_name(member, world):
    dataset = make_dataset(world.own.org, name='Capitales "difficiles" d\'Amérique')
    reply = member.get(f"{DATASETS}{dataset.pk}/export/", {"export_format": "csv"})
    assert reply.status_code == 200
    assert reply["Content-Disposition"] == (
        "attachment; filename*=utf-8''Capitales%20%22difficiles%22%20d%27Am%C3%A9rique-v1.csv"
    )
    assert len(transfer.parse(streamed(reply), "x.csv")) == 2


def chat_record(
    org, *, request: dict | None, response: dict | None = None, provider="openai", endpoint="chat.completions"
) -> RequestRecord:
    record = RequestRecord.objects.create(
        org=org, provider=provider, endpoint=endpoint, model="gpt-4o-mini", status=200
    )
    if request is not None:
        RequestBody.objects.create(record=record, request=json.dumps(request), response=json.dumps(response or {}))
    return record


def test_a_request_record_with_its_full_body_becomes_an_item(member, world, capitals):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Chile?"}]
    record = chat_record(
        world.own.org,
        request={"model": "gpt-4o-mini", "messages": messages},
        response={"choices": [{"message": {"role": "assistant", "content": "Santiago"}}]},
    )
    reply = member.post(f"{DATASETS}{capitals.pk}/from-records/", {"records": [str(record.pk)]}, format="json")
    assert reply.status_code == 201, reply.json()
    assert (reply.json()["number"], reply.json()["item_count"]) == (2, 3)
    item = member.get(f"{DATASETS}{capitals.pk}/items/").json()[-1]
    assert (item["messages"], item["expected"], item["source_record"]) == (messages, "Santiago", str(record.pk))


def test_claude_codes_system_blocks_and_openais_developer_role_come_through_as_system_messages(member, world, capitals):
    anthropic = chat_record(
        world.own.org,
        provider="anthropic",
        endpoint="messages",
        request={
            "model": "claude-sonnet-4-5",
            "system": [{"type": "text", "text": "You are Claude Code."}],
            "messages": [{"role": "user", "content": "List the files."}],
        },
    )
    openai_ = chat_record(
        world.own.org,
        request={
            "model": "o3",
            "messages": [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "2+2?"}],
        },
    )
    reply = member.post(
        f"{DATASETS}{capitals.pk}/from-records/", {"records": [str(anthropic.pk), str(openai_.pk)]}, format="json"
    )
    assert reply.status_code == 201, reply.json()
    first, second = member.get(f"{DATASETS}{capitals.pk}/items/").json()[-2:]
    assert first["messages"][0] == {"role": "system", "content": "You are Claude Code."}
    assert second["messages"][0] == {"role": "system", "content": "Be terse."}


def test_a_prompt_version_that_is_not_an_id_is_a_field_error(member, world, capitals):
    reply = member.post(
        RUNS,
        {
            "org": world.own.org.pk,
            "dataset_version": capitals.latest.pk,
            "targets": [{"prompt_version": "latest", "model": "gpt-4o"}],
            "evaluators": [{"kind": "exact_match"}],
        },
        format="json",
    )
    assert reply.status_code == 400 and "targets.0.prompt_version" in reply.json()


def test_a_record_without_a_stored_body_is_named_and_nothing_is_added(member, world, capitals):
    kept = chat_record(world.own.org, request={"messages": [{"role": "user", "content": "hi"}]})
    bare = chat_record(world.own.org, request=None)
    elsewhere = chat_record(world.other.org, request={"messages": [{"role": "user", "content": "hi"}]})
    reply = member.post(
        f"{DATASETS}{capitals.pk}/from-records/",
        {"records": [str(kept.pk), str(bare.pk), str(elsewhere.pk)]},
        format="json",
    )
    assert reply.status_code == 400
    errors = reply.json()["records"]
    assert len(errors) == 2
    assert (
        f"Record {bare.pk} has no stored request body" in errors[0] and f"{elsewhere.pk}: no such record" in errors[1]
    )
    assert capitals.versions.count() == 1


# --- who may do what ----------------------------------------------------------------------------------


def test_a_gateway_key_without_the_evals_scope_is_refused_naming_the_scope(client_for, world, capitals):
    _, reader = make_key(app=world.own.app, scopes=["prompts:read", "logs:read"])
    for url in (DATASETS, RUNS, API + "evaluators/", f"{API}eval-comparisons/?a=1&b=1"):
        reply = client_for(key=reader).get(url)
        assert reply.status_code == 403 and "'evals:run'" in reply.json()["detail"], url


def test_a_gateway_key_with_the_evals_scope_works_in_its_own_org_only(client_for, world, capitals):
    _, plaintext = make_key(app=world.own.app, scopes=["evals:run"])
    api = client_for(key=plaintext)
    make_dataset(world.other.org, name="theirs")
    assert [d["name"] for d in api.get(DATASETS).json()["results"]] == ["capitals"]
    created = api.post(DATASETS, {"org": world.own.org.pk, "name": "from a key", "items": CAPITALS}, format="json")
    assert created.status_code == 201, created.json()
    assert api.post(f"{DATASETS}{capitals.pk}/items/", {"items": CAPITALS}, format="json").status_code == 201
    elsewhere = api.post(DATASETS, {"org": world.other.org.pk, "name": "intruder"}, format="json")
    assert elsewhere.status_code == 400 and "org" in elsewhere.json()
    assert not Dataset.objects.filter(name="intruder").exists()


def test_a_viewer_may_read_but_not_create_datasets_or_runs(client_for, world, capitals):
    viewer = client_for(user=world.own.users["viewer"])
    assert viewer.get(f"{DATASETS}{capitals.pk}/items/").status_code == 200
    dataset = viewer.post(DATASETS, {"org": world.own.org.pk, "name": "mine"}, format="json")
    assert dataset.status_code == 403 and "does not allow" in dataset.json()["detail"]
    assert viewer.post(f"{DATASETS}{capitals.pk}/items/", {"items": CAPITALS}, format="json").status_code == 403
    run = viewer.post(
        RUNS,
        {
            "org": world.own.org.pk,
            "dataset_version": capitals.latest.pk,
            "targets": [{"model": "gpt-4o"}],
            "evaluators": [{"kind": "exact_match"}],
        },
        format="json",
    )
    assert run.status_code == 403 and not EvalRun.objects.exists()
    assert capitals.versions.count() == 1 and not Dataset.objects.filter(name="mine").exists()


def test_a_member_may_create_a_dataset(member, world):
    assert member.post(DATASETS, {"org": world.own.org.pk, "name": "mine"}, format="json").status_code == 201
    assert Dataset.objects.get(name="mine").latest.item_count == 0


# --- runs ---------------------------------------------------------------------------------------------


@pytest.fixture
def gatewayed(recording, fake, world, settings):
    """The own org's capitals dataset, with runs going through the gateway to the scripted fake provider."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    fake.answers = scripted
    return make_dataset(world.own.org)


def queue_run(
    api, world, dataset, targets=({"model": "gpt-4o"}, {"model": "gpt-4o-mini"}), evaluators=({"kind": "exact_match"},)
):
    return api.post(
        RUNS,
        {
            "org": world.own.org.pk,
            "name": "capitals",
            "dataset_version": dataset.latest.pk,
            "targets": list(targets),
            "evaluators": list(evaluators),
        },
        format="json",
    )


def test_a_queued_run_completes_with_per_target_summaries_and_paginated_results(member, world, gatewayed):
    queued = queue_run(member, world, gatewayed)
    assert queued.status_code == 201, queued.json()
    assert queued.json()["status"] == "queued" and queued.json()["total"] == 4
    finished(queued.json()["id"])
    run = member.get(f"{RUNS}{queued.json()['id']}/").json()
    assert (run["status"], run["done"], run["total"], run["failed"]) == ("completed", 4, 4, 0)
    summaries = [t["summary"] for t in run["target_list"]]
    assert [t["label"] for t in run["target_list"]] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    assert [s["pass_rate"] for s in summaries] == [1.0, 0.5]
    assert [s["evaluators"]["exact_match"]["mean"] for s in summaries] == [1.0, 0.5]

    page = member.get(f"{RUNS}{run['id']}/results/", {"limit": 3}).json()
    assert page["count"] == 4 and len(page["results"]) == 3 and page["next"]
    wrong = member.get(f"{RUNS}{run['id']}/results/", {"target": 1}).json()["results"]
    assert [(r["position"], r["output"], r["passed"]) for r in wrong] == [(0, "Paris", True), (1, "Bogotá", False)]
    score = wrong[1]["scores"][0]
    assert (score["name"], score["score"], score["passed"]) == ("exact_match", 0, False) and "Lima" in score[
        "explanation"
    ]
    assert wrong[1]["cost"] is not None and wrong[1]["request_id"]
    garbled = member.get(f"{RUNS}{run['id']}/results/", {"target": "mini"})
    assert garbled.status_code == 400 and "target" in garbled.json()


def test_a_bad_evaluator_or_target_is_a_field_error_and_nothing_is_queued(member, world, capitals):
    evaluator = queue_run(member, world, capitals, evaluators=[{"kind": "regex", "pattern": "("}])
    assert evaluator.status_code == 400 and "evaluators.0.pattern" in evaluator.json(), evaluator.json()
    target = queue_run(member, world, capitals, targets=[{"model": "gpt-4o"}, {"model": ""}])
    assert target.status_code == 400 and list(target.json()) == ["targets.1.model"]
    unknown = queue_run(member, world, capitals, evaluators=[{"kind": "vibes"}])
    assert unknown.status_code == 400 and any(k.startswith("evaluators.0") for k in unknown.json())
    assert not EvalRun.objects.exists()


def test_a_run_of_another_orgs_dataset_version_is_refused(member, world):
    theirs = make_dataset(world.other.org, name="theirs")
    reply = member.post(
        RUNS,
        {
            "org": world.own.org.pk,
            "dataset_version": theirs.latest.pk,
            "targets": [{"model": "gpt-4o"}],
            "evaluators": [{"kind": "exact_match"}],
        },
        format="json",
    )
    assert reply.status_code == 400 and "dataset_version" in reply.json()
    assert not EvalRun.objects.exists()


def test_cancelling_a_finished_run_leaves_it_finished(member, world, gatewayed):
    run_id = finished(queue_run(member, world, gatewayed).json()["id"]).pk
    reply = member.post(f"{RUNS}{run_id}/cancel/")
    assert reply.status_code == 200 and reply.json()["status"] == "completed"
    assert EvalRun.objects.get(pk=run_id).status == "completed"


def test_cancelling_a_queued_run_stops_it(client_for, member, world, capitals):
    run = services.run_create(
        actor=SYSTEM,
        org=world.own.org,
        dataset_version=capitals.latest,
        targets=[{"model": "gpt-4o"}],
        evaluators=[{"kind": "exact_match"}],
        queue=False,
    )
    assert client_for(user=world.own.users["viewer"]).post(f"{RUNS}{run.pk}/cancel/").status_code == 403
    reply = member.post(f"{RUNS}{run.pk}/cancel/")
    assert reply.status_code == 200 and reply.json()["status"] == "cancelled" and reply.json()["finished_at"]
    assert EvalRun.objects.get(pk=run.pk).status == "cancelled"


def test_comparing_two_targets_counts_regressions_and_gives_deltas(client_for, member, world, gatewayed):
    run_id = finished(queue_run(member, world, gatewayed).json()["id"]).pk
    reply = member.get(API + "eval-comparisons/", {"a": f"{run_id}:0", "b": f"{run_id}:1"})
    assert reply.status_code == 200, reply.json()
    found = reply.json()
    assert (found["counts"]["regression"], found["counts"]["same"], found["counts"]["improvement"]) == (1, 1, 0)
    assert [(r["input"], r["change"]) for r in found["rows"]] == [
        ("Capital of France?", "same"),
        ("Capital of Peru?", "regression"),
    ]
    assert found["delta"]["pass_rate"] == -0.5 and found["delta"]["evaluators"]["exact_match"]["mean"] == -0.5

    missing = member.get(API + "eval-comparisons/", {"a": f"{run_id}:0"})
    assert missing.status_code == 400 and "b" in missing.json() and "a" not in missing.json()
    garbled = member.get(API + "eval-comparisons/", {"a": "run-one", "b": f"{run_id}:1"})
    assert garbled.status_code == 400 and "a" in garbled.json()
    outsider = client_for(user=world.other.users["owner"])
    assert outsider.get(API + "eval-comparisons/", {"a": f"{run_id}:0", "b": f"{run_id}:1"}).status_code == 404
    assert outsider.get(f"{RUNS}{run_id}/").status_code == 404
    assert outsider.get(f"{RUNS}{run_id}/results/").status_code == 404


def test_the_evaluator_catalogue_lists_every_kind_with_its_settings(member):
    catalogue = {e["kind"]: e for e in member.get(API + "evaluators/").json()}
    assert set(catalogue) == {
        "exact_match",
        "contains",
        "not_contains",
        "regex",
        "valid_json",
        "json_schema",
        "numeric",
        "similarity",
        "llm_judge",
        "latency",
        "cost",
    }
    assert catalogue["regex"]["params"]["pattern"]["required"] is True
    assert catalogue["llm_judge"]["label"] == "LLM judge" and "rubric" in catalogue["llm_judge"]["params"]
    assert all(e["description"] for e in catalogue.values())


def test_the_openapi_schema_documents_the_evals_endpoints(api, db):
    schema = api.get("/ingate/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "datasets/",
        "datasets/{id}/items/",
        "datasets/{id}/import/",
        "datasets/{id}/export/",
        "datasets/{id}/from-records/",
        "eval-runs/",
        "eval-runs/{id}/results/",
        "eval-runs/{id}/cancel/",
        "eval-comparisons/",
        "evaluators/",
    ):
        assert f"/ingate/api/v1/{path}" in paths, path
    assert "multipart/form-data" in paths["/ingate/api/v1/datasets/{id}/import/"]["post"]["requestBody"]["content"]


def test_a_datasets_description_changes_with_an_audit_entry_and_archiving_hides_it(member, capitals):
    from tenancy.models import AuditLog

    changed = member.patch(f"{DATASETS}{capitals.pk}/", {"description": "World capitals"}, format="json")
    assert changed.status_code == 200 and changed.json()["description"] == "World capitals"
    entry = AuditLog.objects.get(object_type="evals.Dataset", object_id=str(capitals.pk), action="update")
    assert entry.changes["description"] == ["", "World capitals"]
    assert member.post(f"{DATASETS}{capitals.pk}/archive/").status_code == 200
    assert [d["name"] for d in member.get(DATASETS).json()["results"]] == []
    assert capitals.versions.count() == 1  # its versions stay, for the runs that used them
