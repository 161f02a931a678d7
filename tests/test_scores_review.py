"""The review queue (a person scores requests one after another, picked by the logs filters), a record's scores
as the request page shows them, and datasets built from scored requests."""

import datetime
import json

import pytest
from django.template import RequestContext, Template
from django.test import Client, RequestFactory
from django.utils import timezone

from evals import services as evals
from evals.models import Dataset
from observability import services
from observability.models import RequestBody, RequestRecord, Score
from observability.scores import ScoreMatch
from tenancy.audit import Actor
from tenancy.permissions import Principal

SYSTEM = Actor.system("test")
QUEUE = "/ingate/review/"


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_record(org, minutes_ago: int, question: str = "", answer: str = "", **fields) -> RequestRecord:
    record = RequestRecord.objects.create(
        org=org,
        provider="openai",
        endpoint="chat.completions",
        model=fields.pop("model", "gpt-4o-mini"),
        status=200,
        created_at=timezone.now() - datetime.timedelta(minutes=minutes_ago),
        **fields,
    )
    if question:
        RequestBody.objects.create(
            record=record,
            request=json.dumps({"model": record.model, "messages": [{"role": "user", "content": question}]}),
            response=json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}),
        )
    return record


@pytest.fixture
def records(world):
    """Three requests of the own org, newest first: capitals of France, Peru and Chile."""
    return [
        make_record(world.own.org, n, f"Capital of {country}?", city)
        for n, (country, city) in enumerate([("France", "Paris"), ("Peru", "Lima"), ("Chile", "Santiago")], 1)
    ]


def on_screen(page: str) -> str:
    return page.split('data-record="')[1].split('"')[0]


def queue_post(client, record, query: str, **fields):
    return client.post("/ingate/review/score/", {"record": str(record.pk), "queue": query, **fields}, follow=True)


def test_the_queue_shows_the_newest_unscored_request_and_scoring_moves_to_the_next(world, records):
    member = browser(world.own.users["member"])
    query = "org=own-org&name=helpful"
    page = member.get(f"{QUEUE}?{query}").content.decode()
    assert on_screen(page) == str(records[0].pk)
    assert 'data-testid="left">3<' in page
    assert "Capital of France?" in page and "Paris" in page  # the conversation and the answer
    assert 'data-testid="score-5"' in page  # numbers 1 to 5 by default

    after = queue_post(member, records[0], query, score="v:4", comment="Right, terse").content.decode()
    score = Score.objects.get()
    assert (score.record_id, score.name, score.value, score.comment) == (records[0].pk, "helpful", 4.0, "Right, terse")
    assert (score.source, score.author, score.author_name) == ("person", world.own.users["member"], "own-member")
    assert on_screen(after) == str(records[1].pk) and 'data-testid="left">2<' in after
    assert "Scored helpful = 4" in after


def test_skipping_moves_on_without_scoring_and_the_end_says_what_to_do(world, records):
    member = browser(world.own.users["member"])
    query = "org=own-org&name=helpful"
    for record in records:
        page = queue_post(member, record, query, action="skip").content.decode()
    assert not Score.objects.exists()
    assert 'data-testid="queue-empty"' in page and "(3 skipped)" in page
    # Another score name is another queue: nothing skipped there.
    assert on_screen(member.get(f"{QUEUE}?org=own-org&name=tone").content.decode()) == str(records[0].pk)


def test_the_queue_picks_its_requests_by_the_logs_filters_and_offers_labels(world, records):
    other_model = make_record(world.own.org, 0, model="claude-3-5-haiku")
    member = browser(world.own.users["member"])
    query = "org=own-org&name=tone&labels=polite,rude&model=claude-3-5-haiku"
    page = member.get(f"{QUEUE}?{query}").content.decode()
    assert on_screen(page) == str(other_model.pk) and 'data-testid="left">1<' in page
    assert 'value="l:polite"' in page and 'value="l:rude"' in page and 'data-testid="score-3"' not in page
    queue_post(member, other_model, query, score="l:rude")
    assert Score.objects.get().label == "rude" and Score.objects.get().value is None
    refused = member.get(f"{QUEUE}?org=own-org&name=tone&score=>>")
    assert refused.status_code == 400 and "is not a score" in refused.content.decode()


def test_a_viewer_sees_the_queue_but_no_score_buttons_and_cannot_score(world, records):
    viewer = browser(world.own.users["viewer"])
    page = viewer.get(f"{QUEUE}?org=own-org&name=helpful").content.decode()
    assert on_screen(page) == str(records[0].pk) and 'data-testid="score-form"' not in page
    after = queue_post(viewer, records[0], "org=own-org&name=helpful", score="v:5").content.decode()
    assert "may read scores but not add them" in after and not Score.objects.exists()


def test_another_orgs_request_cannot_be_scored_from_the_page(world, records):
    theirs = make_record(world.other.org, 1)
    page = queue_post(browser(world.own.users["owner"]), theirs, "org=own-org&name=helpful", score="v:1")
    assert "not in your organizations" in page.content.decode() and not Score.objects.exists()
    assert browser(world.own.users["owner"]).get(f"{QUEUE}?org=other-org").status_code == 404


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": "two words", "score": "3"}, "Name a score in one word"),
        ({"name": "helpful", "score": ""}, "Give a numeric value or a label"),
        ({"name": "helpful", "score": "v:lots"}, "Give a numeric value or a label"),
        ({"name": "", "score": "3"}, "This field cannot be blank"),
    ],
)
def test_bad_scores_from_a_page_are_messages_never_errors(world, records, fields, message):
    member = browser(world.own.users["member"])
    page = member.post(
        "/ingate/review/score/",
        {"record": str(records[0].pk), "back": f"/ingate/logs/{records[0].pk}/", **fields},
        follow=True,
    )
    assert page.status_code == 200 and message in page.content.decode()
    assert not Score.objects.exists()
    assert member.post("/ingate/review/score/", {"record": "nope"}, follow=True).status_code == 200


def test_a_records_scores_partial_lists_them_and_offers_the_form_to_members(world, records):
    services.score_create(actor=SYSTEM, record=records[0], name="helpful", value=1, comment="<b>ok</b>")
    services.score_create(actor=SYSTEM, record=records[0], name="tone", label="polite")
    template = Template("{% load scores %}{% record_scores record %}")

    def rendered(user) -> str:
        request = RequestFactory().get(f"/ingate/logs/{records[0].pk}/")
        request.user = user
        return template.render(RequestContext(request, {"record": records[0]}))  # as a page renders it

    shown = rendered(world.own.users["member"])
    assert 'data-score="helpful"' in shown and 'data-score="tone"' in shown and ">polite<" in shown
    assert "&lt;b&gt;ok&lt;/b&gt;" in shown
    assert 'data-testid="add-score"' in shown and 'name="csrfmiddlewaretoken" value="' in shown
    assert 'name="csrfmiddlewaretoken" value=""' not in shown
    assert f'name="back" value="/ingate/logs/{records[0].pk}/"' in shown
    assert 'data-testid="add-score"' not in rendered(world.own.users["viewer"])


def test_the_add_score_form_of_a_request_page_scores_it_and_goes_back(world, records):
    back = f"/ingate/logs/{records[1].pk}/"
    reply = browser(world.own.users["member"]).post(
        "/ingate/review/score/", {"record": str(records[1].pk), "name": "correct", "score": "yes", "back": back}
    )
    assert reply.status_code == 302 and reply["Location"] == back
    assert Score.objects.get().label == "yes"
    elsewhere = browser(world.own.users["member"]).post(
        "/ingate/review/score/", {"record": str(records[1].pk), "name": "x", "score": "1", "back": "https://evil.test/"}
    )
    assert elsewhere["Location"].startswith("/ingate/review/")


def test_a_dataset_is_built_from_the_requests_scored_above_a_threshold(world, records):
    unkept = make_record(world.own.org, 0)  # scored, but its text is not kept
    for record, value in zip([*records, unkept], [5, 2, 4, 5], strict=True):
        services.score_create(actor=SYSTEM, record=record, name="helpful", value=value)
    member = Actor(principal=Principal.for_user(world.own.users["member"]))
    version, left_out = evals.dataset_from_scores(
        actor=member,
        org=world.own.org,
        dataset_name="good answers",
        score_name="helpful",
        score=ScoreMatch.parse(">=4"),
    )
    items = list(version.items.order_by("position"))
    assert [i.messages[0]["content"] for i in items] == ["Capital of Chile?", "Capital of France?"]
    assert [i.expected for i in items] == ["Santiago", "Paris"] and left_out == 1
    assert {str(i.source_record) for i in items} == {str(records[0].pk), str(records[2].pk)}
    assert version.message == "2 request(s) scored helpful >=4"

    again, _ = evals.dataset_from_scores(
        actor=member, org=world.own.org, dataset_name="good answers", score_name="helpful"
    )
    assert (again.dataset_id, again.number, again.item_count) == (version.dataset_id, 2, 2 + 3)


def test_the_queue_page_builds_a_dataset_and_says_when_nothing_matches(world, records):
    services.score_create(actor=SYSTEM, record=records[1], name="helpful", label="good")
    member = browser(world.own.users["member"])
    form = {"dataset": "good ones", "score_name": "helpful", "score": "good", "limit": "10"}
    reply = member.post("/ingate/evals/datasets/from-scores/?org=own-org", form, follow=True)
    dataset = Dataset.objects.get(name="good ones")
    assert reply.redirect_chain[-1][0] == f"/ingate/evals/datasets/{dataset.pk}/"
    assert "good ones version 1: 1 items" in reply.content.decode()
    nothing = member.post("/ingate/evals/datasets/from-scores/?org=own-org", {**form, "score": "bad"}, follow=True)
    assert "none carries that score" in nothing.content.decode()
    bad = member.post("/ingate/evals/datasets/from-scores/?org=own-org", {**form, "score": ">=x"}, follow=True)
    assert "is not a score" in bad.content.decode()
    viewer = browser(world.own.users["viewer"])
    assert viewer.post("/ingate/evals/datasets/from-scores/?org=own-org", form).status_code == 403
