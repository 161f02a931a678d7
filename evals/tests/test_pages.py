"""Eval pages as a signed-in user meets them: datasets (create, import, add an item), queueing a run and reading
its results, comparing targets, "add to dataset" on the logs page, and the playground's streamed columns."""

import json
import time

import openai
import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from evals import services
from evals.models import Dataset, EvalRun, RunStatus
from evals.tests import scripted
from evals.tests.waiting import finished
from evals.transfer import clean_item
from observability.models import BodyMode, ObservabilitySettings, RequestRecord
from prompts import services as prompts
from tenancy.audit import Actor
from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory
from tests.test_records import wait_for_record

SYSTEM = Actor.system("test")
EVALS = "/ingate/evals/"
CAPITALS = [{"input": "Capital of France?", "expected": "Paris"}, {"input": "Capital of Peru?", "expected": "Lima"}]


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_dataset(org, name="capitals", items=CAPITALS) -> Dataset:
    return services.dataset_create(actor=SYSTEM, org=org, name=name, items=[clean_item(i) for i in items])


def queued_run(dataset, name="") -> EvalRun:
    """A run left queued (no worker takes it), as a run waiting for a busy worker looks."""
    return services.run_create(
        actor=SYSTEM,
        org=dataset.org,
        dataset_version=dataset.latest,
        name=name,
        targets=[{"model": "gpt-4o"}],
        evaluators=[{"kind": "exact_match"}],
        queue=False,
    )


def upload(name: str, text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="application/octet-stream")


def text_of(response) -> str:
    return response.content.decode()


def streamed(response) -> bytes:
    """The body of a response streamed from an async generator (the playground's events), read on an event
    loop as the ASGI server would."""
    assert response.streaming and response.is_async

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(read)()


@pytest.fixture
def capitals(world) -> Dataset:
    return make_dataset(world.own.org)


@pytest.fixture
def member(world) -> Client:
    return browser(world.own.users["member"])


@pytest.fixture
def gatewayed(recording, fake, world, settings, capitals) -> Dataset:
    """Runs and playground calls go through the gateway to the scripted fake provider; runs execute in a
    background thread (the embedded mode)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    fake.answers = scripted
    return capitals


# --- datasets -----------------------------------------------------------------------------------------


def test_the_index_lists_the_chosen_orgs_datasets_and_runs_only(world, capitals):
    theirs = make_dataset(world.other.org, name="their-set")
    queued_run(capitals, name="own-run")
    queued_run(theirs, name="their-run")
    both = UserFactory(username="both")
    MembershipFactory(org=world.own.org, user=both, role=Role.VIEWER)
    MembershipFactory(org=world.other.org, user=both, role=Role.VIEWER)
    own = text_of(browser(both).get(EVALS, {"org": "own-org"}))
    assert "capitals" in own and "own-run" in own and "their-set" not in own and "their-run" not in own
    other = text_of(browser(both).get(EVALS, {"org": "other-org"}))
    assert "their-set" in other and "their-run" in other and "capitals" not in other
    assert browser(world.own.users["owner"]).get(EVALS, {"org": "other-org"}).status_code == 404


def test_creating_a_dataset_from_the_index_with_a_csv_file(world, member):
    assert 'data-testid="dataset-create"' in text_of(member.get(EVALS, {"org": "own-org"}))
    table = "input,expected,tags\nCapital of Kenya?,Nairobi,africa\nCapital of Chile?,Santiago,\n"
    page = member.post(
        f"{EVALS}datasets/?org=own-org",
        {"name": "more capitals", "description": "by CSV", "file": upload("capitals.csv", table)},
        follow=True,
    )
    dataset = Dataset.objects.get(org=world.own.org, name="more capitals")
    assert page.redirect_chain[-1][0] == f"{EVALS}datasets/{dataset.pk}/"
    assert "Dataset more capitals created with 2 item(s)." in text_of(page)
    assert "Capital of Kenya?" in text_of(page) and "Santiago" in text_of(page)
    assert (dataset.latest.number, dataset.latest.item_count, dataset.latest.message) == (1, 2, "Imported capitals.csv")


def test_a_bad_file_on_the_index_imports_nothing_and_names_the_lines(world, member):
    table = "input,expected\nCapital of Kenya?,Nairobi\n,no input\nCapital of Chile?,Santiago,extra\n"
    page = text_of(
        member.post(
            f"{EVALS}datasets/?org=own-org", {"name": "broken", "file": upload("broken.csv", table)}, follow=True
        )
    )
    assert "Nothing was imported." in page and "line 3:" in page and "line 4: the row has 3 cells" in page
    assert not Dataset.objects.filter(name="broken").exists()


def test_a_viewer_cannot_create_a_dataset_from_the_index(world):
    viewer = browser(world.own.users["viewer"])
    assert 'data-testid="dataset-create"' not in text_of(viewer.get(EVALS, {"org": "own-org"}))
    assert viewer.post(f"{EVALS}datasets/?org=own-org", {"name": "mine"}).status_code == 403
    assert not Dataset.objects.exists()


def test_the_dataset_page_shows_versions_and_items(world, member, capitals):
    services.items_add(
        actor=SYSTEM, dataset=capitals, items=[clean_item({"input": "Capital of Japan?", "expected": "Tokyo"})]
    )
    page = text_of(member.get(f"{EVALS}datasets/{capitals.pk}/"))
    assert "<h2>Items of v2</h2>" in page and "Capital of Japan?" in page and "Tokyo" in page
    assert 'href="?version=1"' in page and "Added 1 item" in page
    first = text_of(member.get(f"{EVALS}datasets/{capitals.pk}/", {"version": 1}))
    assert "<h2>Items of v1</h2>" in first and "Tokyo" not in first and "Lima" in first
    assert "export_format=jsonl" in page and 'data-testid="import"' in page
    assert member.get(f"{EVALS}datasets/{capitals.pk}/", {"version": 7}).status_code == 404
    assert 'data-testid="import"' not in text_of(
        browser(world.own.users["viewer"]).get(f"{EVALS}datasets/{capitals.pk}/")
    )
    assert browser(world.other.users["owner"]).get(f"{EVALS}datasets/{capitals.pk}/").status_code == 404


def test_importing_a_file_on_the_dataset_page_makes_a_new_version(member, capitals):
    jsonl = '{"input": "Capital of Japan?", "expected": "Tokyo"}\n'
    page = member.post(
        f"{EVALS}datasets/{capitals.pk}/change/", {"file": upload("japan.jsonl", jsonl), "mode": "append"}, follow=True
    )
    assert "Version 2: 3 item(s)." in text_of(page)
    assert [i.expected for i in capitals.latest.items.all()] == ["Paris", "Lima", "Tokyo"]
    page = member.post(
        f"{EVALS}datasets/{capitals.pk}/change/", {"file": upload("japan.jsonl", jsonl), "mode": "replace"}, follow=True
    )
    assert "Version 3: 1 item(s)." in text_of(page)
    bad = member.post(f"{EVALS}datasets/{capitals.pk}/change/", {"file": upload("bad.jsonl", "{oops\n")}, follow=True)
    assert "Nothing was imported. line 1: not valid JSON" in text_of(bad) and capitals.versions.count() == 3


def test_adding_one_item_with_the_small_form(world, member, capitals):
    page = member.post(
        f"{EVALS}datasets/{capitals.pk}/change/", {"input": "Capital of Chad?", "expected": "N'Djamena"}, follow=True
    )
    assert "Version 2: 3 item(s)." in text_of(page)
    added = capitals.latest.items.last()
    assert (added.messages, added.expected) == ([{"role": "user", "content": "Capital of Chad?"}], "N'Djamena")
    empty = member.post(f"{EVALS}datasets/{capitals.pk}/change/", {"input": ""}, follow=True)
    assert "an item needs" in text_of(empty) and capitals.versions.count() == 2
    viewer = browser(world.own.users["viewer"])
    assert viewer.post(f"{EVALS}datasets/{capitals.pk}/change/", {"input": "x"}).status_code == 403


# --- runs ---------------------------------------------------------------------------------------------


def test_the_new_run_form_offers_the_evaluators_that_need_no_settings(member, capitals):
    page = text_of(member.get(f"{EVALS}runs/new/", {"org": "own-org", "dataset_version": capitals.latest.pk}))
    assert '<input type="checkbox" name="evaluator" value="exact_match" checked>' in page
    for kind in ("contains", "valid_json", "similarity"):
        assert f'name="evaluator" value="{kind}">' in page
    assert 'name="evaluator" value="regex"' not in page and "<code>regex</code>" in page  # settings: in the JSON box
    assert f'<option value="{capitals.latest.pk}" selected>capitals v1 (2 items)</option>' in page
    assert page.count('name="t0-model"') == 1 and 'name="t3-model"' in page


def test_queueing_a_run_from_the_form_returns_at_once_and_the_run_finishes_in_the_background(member, gatewayed, fake):
    fake.defaults["delay_ms"] = 500  # two calls one after the other: a POST that ran them would take a second
    started = time.monotonic()
    page = member.post(
        f"{EVALS}runs/new/?org=own-org",
        {
            "dataset_version": gatewayed.latest.pk,
            "name": "mini on capitals",
            "concurrency": "1",
            "t0-model": "gpt-4o-mini",
            "evaluator": ["exact_match"],
        },
        follow=True,
    )
    took = time.monotonic() - started
    run = EvalRun.objects.get(name="mini on capitals")
    assert page.redirect_chain[-1][0] == f"{EVALS}runs/{run.pk}/"
    html = text_of(page)
    assert f"Run {run.pk} queued: 2 calls." in html
    assert took < 0.9 and not EvalRun.objects.get(pk=run.pk).finished, took
    assert 'data-testid="status">Completed<' not in html and 'data-finished="0"' in html  # the page follows it live

    finished(run.pk)
    html = text_of(member.get(f"{EVALS}runs/{run.pk}/"))
    assert (
        '<span class="status ok" data-testid="status">Completed</span>' in html
        and '<span data-testid="counts">2 / 2</span>' in html
    )
    assert "0. openai/gpt-4o-mini" in html and "exact_match: 0.50 · 50%" in html
    assert "Paris" in html and "Bogotá" in html and 'data-testid="cancel"' not in html


def test_a_run_without_targets_is_shown_again_with_the_error(member, capitals):
    page = member.post(
        f"{EVALS}runs/new/?org=own-org",
        {"dataset_version": capitals.latest.pk, "name": "nothing", "evaluator": ["exact_match"]},
    )
    assert page.status_code == 400
    assert 'data-testid="errors"' in text_of(page) and "targets: Give at least one target." in text_of(page)
    assert 'value="nothing"' in text_of(page) and not EvalRun.objects.exists()


def test_hand_made_form_values_get_an_answer_not_a_server_error(member, capitals):
    page = member.post(
        f"{EVALS}runs/new/?org=own-org", {"dataset_version": "v1", "concurrency": "lots", "t0-model": "gpt-4o"}
    )
    assert page.status_code == 400 and "Pick a dataset version." in text_of(page)
    assert member.post(f"{EVALS}datasets/from-records/", {"dataset": "capitals", "record": "x"}).status_code == 404
    page = member.post(f"{EVALS}datasets/from-records/", {"dataset": capitals.pk, "record": "not-a-uuid"}, follow=True)
    assert "Tick the records to add first." in text_of(page) and capitals.versions.count() == 1


def test_a_viewer_cannot_queue_a_run(world, capitals):
    viewer = browser(world.own.users["viewer"])
    reply = viewer.post(f"{EVALS}runs/new/?org=own-org", {"dataset_version": capitals.latest.pk, "t0-model": "gpt-4o"})
    assert reply.status_code == 403 and not EvalRun.objects.exists()


def test_another_orgs_run_page_is_not_found(world, capitals):
    run = queued_run(capitals)
    assert browser(world.other.users["owner"]).get(f"{EVALS}runs/{run.pk}/").status_code == 404
    assert browser(world.other.users["owner"]).post(f"{EVALS}runs/{run.pk}/cancel/").status_code == 404
    assert EvalRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_the_cancel_button_shows_only_while_the_run_is_not_finished(world, member, capitals):
    run = queued_run(capitals)
    assert 'data-testid="cancel"' in text_of(member.get(f"{EVALS}runs/{run.pk}/"))
    assert 'data-testid="cancel"' not in text_of(browser(world.own.users["viewer"]).get(f"{EVALS}runs/{run.pk}/"))
    page = text_of(member.post(f"{EVALS}runs/{run.pk}/cancel/", follow=True))
    assert f"Run {run.pk} is stopping." in page and 'data-testid="status">Cancelled<' in page
    assert 'data-testid="cancel"' not in page and EvalRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_a_target_whose_calls_have_no_price_shows_unpriced_not_zero(member, capitals):
    from evals.models import EvalResult

    run = queued_run(capitals)
    target = run.targets.get()
    for item in capitals.latest.items.all():
        EvalResult.objects.create(run=run, target=target, item=item, output="x", cost=None, latency_ms=10)
    summary = text_of(member.get(f"{EVALS}runs/{run.pk}/")).split('data-testid="summary"')[1].split("</table>")[0]
    assert 'data-cost="unpriced"' in summary and "$0" not in summary


def test_the_compare_page_counts_regressions_and_improvements(member, gatewayed):
    run = services.run_create(
        actor=SYSTEM,
        org=gatewayed.org,
        dataset_version=gatewayed.latest,
        targets=[{"model": "gpt-4o"}, {"model": "gpt-4o-mini"}],
        evaluators=[{"kind": "exact_match"}],
    )
    finished(run.pk)
    assert f'href="{EVALS}compare/?a={run.pk}:0&amp;b={run.pk}:1"' in text_of(member.get(f"{EVALS}runs/{run.pk}/"))
    page = text_of(member.get(f"{EVALS}compare/", {"a": f"{run.pk}:0", "b": f"{run.pk}:1"}))
    assert '<span class="regression">1 regressions</span> · <span class="improvement">0 improvements</span>' in page
    assert "1 unchanged" in page and 'data-change="regression"' in page
    assert '<td class="num worse">-0.50</td>' in page  # the pass rate fell by half: shown in red
    back = text_of(member.get(f"{EVALS}compare/", {"a": f"{run.pk}:1", "b": f"{run.pk}:0"}))
    assert '<span class="regression">0 regressions</span> · <span class="improvement">1 improvements</span>' in back
    assert member.get(f"{EVALS}compare/", {"a": f"{run.pk}:0"}).status_code == 404


def test_two_runs_compare_item_by_item(member, gatewayed):
    def run_on(model):
        return finished(
            services.run_create(
                actor=SYSTEM,
                org=gatewayed.org,
                dataset_version=gatewayed.latest,
                targets=[{"model": model}],
                evaluators=[{"kind": "exact_match"}],
            ).pk
        )

    before, after = run_on("gpt-4o"), run_on("gpt-4o-mini")
    assert 'data-testid="compare-runs"' in text_of(member.get(f"{EVALS}runs/{after.pk}/"))
    page = text_of(member.get(f"{EVALS}compare/", {"a": f"{before.pk}:0", "b": f"{after.pk}"}))
    assert '<span class="regression">1 regressions</span>' in page and "Bogotá" in page and "Lima" in page


# --- the logs page's "add to dataset" -----------------------------------------------------------------


def gateway_calls(gateway, plaintext) -> list[str]:
    """One plain and one streamed chat through the gateway; their request ids, once both are recorded."""
    client = openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0)
    ids = []
    for country, stream in (("France", False), ("Peru", True)):
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o",
            stream=stream,
            messages=[{"role": "user", "content": f"Capital of {country}?"}],
        ) as response:
            response.read()
            ids.append(response.headers["x-ingate-request-id"])
    deadline = time.monotonic() + 5
    while RequestRecord.objects.filter(pk__in=ids).count() < len(ids):
        assert time.monotonic() < deadline, "the records were not written"
        time.sleep(0.02)
    return ids


def test_logged_requests_with_full_bodies_become_dataset_items(world, member, recording, gatewayed):
    ObservabilitySettings.objects.create(org=world.own.org, body_mode=BodyMode.FULL)
    plain, streamed_id = gateway_calls(recording, world.own.plaintext)
    logs = text_of(member.get("/ingate/logs/", {"org": "own-org"}))
    assert 'data-testid="add-to-dataset"' in logs and f'name="record" value="{plain}"' in logs
    page = member.post(
        f"{EVALS}datasets/from-records/",
        {"dataset": gatewayed.pk, "record": [plain, streamed_id]},
        HTTP_REFERER="/ingate/logs/?org=own-org",
        follow=True,
    )
    assert page.redirect_chain[-1][0] == f"{EVALS}datasets/{gatewayed.pk}/"
    assert "Added 2 record(s) to capitals (version 2)." in text_of(page)
    france, peru = list(gatewayed.latest.items.all())[2:]
    assert (france.messages, france.expected) == ([{"role": "user", "content": "Capital of France?"}], "Paris")
    assert (peru.messages, peru.expected) == ([{"role": "user", "content": "Capital of Peru?"}], "Lima")  # reassembled
    assert (str(france.source_record), france.metadata["model"]) == (plain, "gpt-4o")


def test_adding_requests_whose_bodies_were_not_kept_says_so_and_adds_nothing(world, member, recording, gatewayed):
    plain, _ = gateway_calls(recording, world.own.plaintext)  # the default body mode keeps metadata only
    page = text_of(
        member.post(
            f"{EVALS}datasets/from-records/",
            {"dataset": gatewayed.pk, "record": [plain]},
            HTTP_REFERER="/ingate/logs/?org=own-org",
            follow=True,
        )
    )
    assert f"Record {plain} has no stored request body" in page
    assert gatewayed.versions.count() == 1
    nothing = text_of(
        member.post(
            f"{EVALS}datasets/from-records/",
            {"dataset": gatewayed.pk},
            HTTP_REFERER="/ingate/logs/?org=own-org",
            follow=True,
        )
    )
    assert "Tick the records to add first." in nothing
    viewer = browser(world.own.users["viewer"])
    assert (
        viewer.post(f"{EVALS}datasets/from-records/", {"dataset": gatewayed.pk, "record": [plain]}).status_code == 403
    )


# --- the playground -----------------------------------------------------------------------------------


def stream_column(client, **body):
    return client.post(f"{EVALS}playground/stream/", json.dumps(body), content_type="application/json")


def events_of(response) -> list[dict]:
    chunks = streamed(response).decode().split("\n\n")
    assert chunks[-1] == ""
    return [json.loads(chunk.removeprefix("data: ")) for chunk in chunks[:-1]]


def test_the_playground_has_four_columns(member, capitals):
    page = text_of(member.get(f"{EVALS}playground/", {"org": "own-org"}))
    assert page.count('<section class="column"') == 4
    assert 'data-testid="model-0"' in page and 'value="gpt-4o-mini"' in page and 'data-testid="answer-3"' in page
    assert f'<option value="{capitals.pk}">capitals</option>' in page


def test_a_playground_column_streams_the_answer_then_tokens_and_cost(world, member, recording, fake):
    fake.answers = lambda model, text: "Paris is the capital of France" if model == "gpt-4o" else None
    fake.defaults["x-fake-chunks"] = 3
    fake.defaults["x-fake-chunk-delay-ms"] = 20  # so the chunks arrive apart, as separate deltas
    reply = stream_column(
        member, org="own-org", model="gpt-4o", provider="", system="One sentence.", user="Capital of France?"
    )
    assert reply.status_code == 200 and reply["Content-Type"] == "text/event-stream"
    events = events_of(reply)
    *deltas, done = events
    assert len(deltas) >= 2 and "".join(e["delta"] for e in deltas) == "Paris is the capital of France"
    assert done["done"] is True and done["error"] == "" and done["output_tokens"] == 6 and done["cost"] > 0
    assert done["input_tokens"] > 0 and done["request_id"]
    sent = fake.last_request.json()
    assert sent["messages"] == [
        {"role": "system", "content": "One sentence."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert sent["stream"] is True


def test_a_playground_prompt_version_is_rendered_then_followed_by_the_user_message(world, member, recording, fake):
    prompt = prompts.prompt_create(actor=SYSTEM, org=world.own.org, namespace="geo", name="capital")
    version = prompts.version_create(
        actor=SYSTEM,
        prompt=prompt,
        model="gpt-4o",
        parameters={"temperature": 0.3},
        messages=[{"role": "system", "content": "Answer about {{country}}."}],
    )
    reply = stream_column(
        member,
        org="own-org",
        model="gpt-4o",
        prompt_version=version.pk,
        variables={"country": "Chile"},
        user="Its capital?",
    )
    done = events_of(reply)[-1]
    assert done["error"] == ""
    sent = fake.last_request.json()
    assert sent["messages"] == [
        {"role": "system", "content": "Answer about Chile."},
        {"role": "user", "content": "Its capital?"},
    ]
    assert sent["temperature"] == 0.3  # the version's parameters
    record = wait_for_record(done["request_id"])
    assert (record.prompt_version_id, record.client, record.user_id) == (version.pk, "ingate-playground", "own-member")


def test_bad_playground_requests_get_a_json_error(world, member):
    no_model = stream_column(member, org="own-org", model="", user="hi")
    assert (no_model.status_code, no_model.json()["error"]) == (400, "Name a model.")
    no_text = stream_column(member, org="own-org", model="gpt-4o", user="  ")
    assert (no_text.status_code, no_text.json()["error"]) == (400, "Write a message to send.")
    garbled = member.post(f"{EVALS}playground/stream/", "{not json", content_type="application/json")
    assert garbled.status_code == 400 and garbled.json()["error"].startswith("Not valid JSON")
    theirs = stream_column(member, org="other-org", model="gpt-4o", user="hi")
    assert (theirs.status_code, theirs.json()["error"]) == (404, "No such organization, or not yours.")
    assert Client().post(f"{EVALS}playground/stream/", "{}", content_type="application/json").status_code == 401
    assert member.get(f"{EVALS}playground/stream/").status_code == 405


def test_a_viewer_may_not_send_playground_prompts_to_a_model(world, fake):
    """A model call spends the org's money: members and up, as on the prompt page."""
    reply = stream_column(browser(world.own.users["viewer"]), org="own-org", model="gpt-4o", user="hi")
    assert reply.status_code == 403 and "role" in reply.json()["error"]
    assert fake.requests == []


def save(client, **body):
    return client.post(f"{EVALS}playground/save/", json.dumps(body), content_type="application/json")


def test_saving_from_the_playground_adds_an_item_or_a_prompt_version(world, member, capitals):
    item = save(
        member,
        kind="item",
        org="own-org",
        dataset=capitals.pk,
        system="Be brief.",
        user="Capital of Chad?",
        expected="N'Djamena",
    )
    assert item.status_code == 200 and item.json() == {"saved": "Added to capitals (version 2)."}
    added = capitals.latest.items.last()
    assert added.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of Chad?"},
    ]
    assert added.expected == "N'Djamena"

    prompt = prompts.prompt_create(actor=SYSTEM, org=world.own.org, namespace="geo", name="capital")
    version = save(
        member,
        kind="prompt",
        org="own-org",
        prompt=prompt.pk,
        user="Capital of {{country}}?",
        model="gpt-4o",
        parameters={"temperature": 0},
    )
    assert version.status_code == 200 and version.json() == {"saved": "Saved as geo/capital version 1."}
    saved = prompt.versions.get()
    assert (saved.messages, saved.model, saved.parameters) == (
        [{"role": "user", "content": "Capital of {{country}}?"}],
        "gpt-4o",
        {"temperature": 0},
    )

    unknown = save(member, kind="other", org="own-org", user="hi")
    assert unknown.status_code == 400 and unknown.json()["error"] == "kind is item or prompt."


def test_a_viewer_saving_from_the_playground_is_refused(world, capitals):
    viewer = browser(world.own.users["viewer"])
    reply = save(viewer, kind="item", org="own-org", dataset=capitals.pk, user="Capital of Chad?")
    assert reply.status_code == 403 and "may not change it" in reply.json()["error"]
    assert capitals.versions.count() == 1


def test_long_runs_and_comparisons_are_shown_a_page_at_a_time(member, gatewayed, monkeypatch):
    from evals import views

    monkeypatch.setattr(views, "RESULTS_PER_PAGE", 1)
    run = services.run_create(
        actor=SYSTEM,
        org=gatewayed.org,
        dataset_version=gatewayed.latest,
        targets=[{"model": "gpt-4o"}, {"model": "gpt-4o-mini"}],
        evaluators=[{"kind": "exact_match"}],
    )
    finished(run.pk)
    first, second = (text_of(member.get(f"{EVALS}runs/{run.pk}/", {"page": n})) for n in (1, 2))
    assert "Page 1 of 2" in first and "France" in first and "Peru" not in first
    assert "Page 2 of 2" in second and "Bogotá" in second
    changes = text_of(member.get(f"{EVALS}compare/", {"a": f"{run.pk}:0", "b": f"{run.pk}:1", "show": "changes"}))
    assert 'data-change="regression"' in changes and 'data-change="same"' not in changes
