"""Scores on production traffic: an application scores the request it just made by its X-Ingate-Request-Id, a
person scores with a label and a comment, bad input gets DRF field errors, scores are listed and filtered,
and the records API (the logs) filters records by their scores."""

import datetime
import time
import uuid

import httpx
import openai
import pytest
from django.test import Client
from django.utils import timezone

from observability import retention
from observability.models import RequestRecord, Score
from observability.services import score_create
from tenancy.audit import Actor
from tenancy.tests.factories import make_key

SCORES = "/ingate/api/v1/scores/"
RECORDS = "/ingate/api/v1/records/"


def make_record(org, minutes_ago: int = 5, **fields) -> RequestRecord:
    return RequestRecord.objects.create(
        org=org,
        provider="openai",
        endpoint="chat.completions",
        model=fields.pop("model", "gpt-4o-mini"),
        status=200,
        created_at=timezone.now() - datetime.timedelta(minutes=minutes_ago),
        **fields,
    )


@pytest.fixture
def record(world):
    return make_record(world.own.org)


def test_an_application_scores_the_request_it_just_made_with_its_gateway_key(recording, gateway_key, fake):
    key, plaintext = gateway_key
    _, scorer = make_key(app=key.app, scopes=["scores:write"], name="feedback")
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Was this helpful?"}]
    )
    request_id = raw.headers["x-ingate-request-id"]
    recording.app.sink.close()  # handed on; with Redis, the stream's consumer stores it a moment later
    deadline = time.monotonic() + 10
    while not RequestRecord.objects.filter(pk=request_id).exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    sent = httpx.post(
        recording.url + SCORES,
        json={"request_id": request_id, "name": "thumbs", "value": 1, "comment": "user clicked 👍"},
        headers={"Authorization": f"Bearer {scorer}"},
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["source"] == "api" and sent.json()["author_name"].startswith("key ")
    score = Score.objects.get()
    assert (str(score.record_id), score.name, score.value, score.comment) == (
        request_id,
        "thumbs",
        1.0,
        "user clicked 👍",
    )

    listed = httpx.get(
        recording.url + SCORES, params={"request_id": request_id}, headers={"Authorization": f"Bearer {scorer}"}
    )
    assert [row["name"] for row in listed.json()["results"]] == ["thumbs"]


def test_a_person_scores_a_request_with_a_label_and_a_comment(world, client_for, record):
    member = world.own.users["member"]
    sent = client_for(user=member).post(
        SCORES, {"request_id": str(record.pk), "name": "correct", "label": "wrong", "comment": "Paris, not Lyon"}
    )
    assert sent.status_code == 201, sent.content
    assert sent.json() | {"id": 0, "created_at": ""} == {
        "id": 0,
        "request_id": str(record.pk),
        "org": world.own.org.pk,
        "name": "correct",
        "value": None,
        "label": "wrong",
        "comment": "Paris, not Lyon",
        "source": "person",
        "author_name": member.username,
        "created_at": "",
    }


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "helpful"}, "value"),  # neither a value nor a label
        ({"name": "helpful", "value": 1, "label": "yes"}, "value"),  # both
        ({"name": "helpful", "value": "lots"}, "value"),
        ({"name": "helpful", "value": 1e300}, "value"),
        ({"name": "has spaces", "value": 1}, "name"),
        ({"value": 1}, "name"),
        ({"name": "helpful", "value": 1, "request_id": "not-a-uuid"}, "request_id"),
        ({"name": "helpful", "value": 1, "request_id": str(uuid.uuid4())}, "request_id"),  # no such request
    ],
)
def test_it_refuses_bad_scores_with_a_field_error(world, client_for, record, body, field):
    sent = client_for(user=world.own.users["member"]).post(
        SCORES, {"request_id": str(record.pk), **body}, format="json"
    )
    assert sent.status_code == 400, sent.content
    assert field in sent.json(), sent.json()
    assert not Score.objects.exists()


def test_a_request_of_another_org_is_not_found_for_scoring(world, client_for):
    theirs = make_record(world.other.org)
    sent = client_for(user=world.own.users["owner"]).post(
        SCORES, {"request_id": str(theirs.pk), "name": "x", "value": 1}
    )
    assert sent.status_code == 400 and "request_id" in sent.json()


def test_a_viewer_reads_scores_but_may_not_add_one(world, client_for, record):
    viewer = client_for(user=world.own.users["viewer"])
    refused = viewer.post(SCORES, {"request_id": str(record.pk), "name": "helpful", "value": 1})
    assert refused.status_code == 403 and "score" in refused.json()["detail"]
    client_for(user=world.own.users["member"]).post(
        SCORES, {"request_id": str(record.pk), "name": "helpful", "value": 1}
    )
    assert [row["name"] for row in viewer.get(SCORES).json()["results"]] == ["helpful"]


def test_a_key_needs_scores_write_to_score(world, client_for, record):
    _, reader = make_key(app=world.own.app, scopes=["logs:read"], name="reader")
    sent = client_for(key=reader).post(SCORES, {"request_id": str(record.pk), "name": "helpful", "value": 1})
    assert sent.status_code == 403 and "scores:write" in sent.json()["detail"]


def test_scores_are_filtered_by_name_label_and_source(world, client_for, record):
    member = client_for(user=world.own.users["member"])
    _, app_key = make_key(app=world.own.app, scopes=["scores:write"], name="app")
    client_for(key=app_key).post(SCORES, {"request_id": str(record.pk), "name": "thumbs", "value": 0})
    member.post(SCORES, {"request_id": str(record.pk), "name": "tone", "label": "Rude"})
    member.post(SCORES, {"request_id": str(record.pk), "name": "tone", "label": "polite"})

    def names(**query):
        return [(row["name"], row["label"] or row["value"]) for row in member.get(SCORES, query).json()["results"]]

    assert names(name="tone") == [("tone", "polite"), ("tone", "Rude")]
    assert names(label="rude") == [("tone", "Rude")]
    assert names(source="api") == [("thumbs", 0.0)]
    assert member.get(SCORES, {"source": "robot"}).status_code == 400


def test_the_records_api_filters_records_by_score_name_and_value(world, client_for):
    member = client_for(user=world.own.users["member"])
    good, poor, unscored = (make_record(world.own.org, minutes_ago=n) for n in (1, 2, 3))
    member.post(SCORES, {"request_id": str(good.pk), "name": "helpful", "value": 5})
    member.post(SCORES, {"request_id": str(poor.pk), "name": "helpful", "value": 2})
    member.post(SCORES, {"request_id": str(poor.pk), "name": "tone", "label": "rude"})

    def ids(**query):
        return {row["id"] for row in member.get(RECORDS, query).json()["results"]}

    assert ids(score_name="helpful") == {str(good.pk), str(poor.pk)}
    assert ids(score_name="helpful", score=">=4") == {str(good.pk)}
    assert ids(score_name="helpful", score="<3") == {str(poor.pk)}
    assert ids(score="rude") == {str(poor.pk)}
    assert ids(score_name="tone", score="5") == set()  # the value of that score, not of any other
    assert str(unscored.pk) in ids()
    refused = member.get(RECORDS, {"score": ">=many"})
    assert refused.status_code == 400 and "score" in refused.json()


def test_the_logs_page_filters_by_score(world, client_for):
    member = world.own.users["member"]
    scored, other = make_record(world.own.org, model="scored-model"), make_record(world.own.org, model="other-model")
    client_for(user=member).post(SCORES, {"request_id": str(scored.pk), "name": "helpful", "value": 1})
    browser = Client()
    browser.force_login(member)
    page = browser.get("/ingate/logs/", {"org": "own-org", "score_name": "helpful"}).content.decode()
    assert f'data-record="{scored.pk}"' in page and f'data-record="{other.pk}"' not in page
    page = browser.get("/ingate/logs/", {"org": "own-org", "score": "<<1"})
    assert page.status_code == 200


def test_the_scores_api_is_in_the_openapi_schema(client_for, world):
    schema = client_for(user=world.own.users["viewer"]).get("/ingate/api/schema/", {"format": "json"}).json()
    body = schema["paths"]["/ingate/api/v1/scores/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fields = schema["components"]["schemas"][body["$ref"].rpartition("/")[2]]
    assert {"request_id", "name", "value", "label", "comment"} <= set(fields["properties"])
    assert {"request_id", "name"} <= set(fields["required"])
    params = {p["name"] for p in schema["paths"]["/ingate/api/v1/records/"]["get"]["parameters"]}
    assert {"score_name", "score"} <= params


def test_retention_takes_a_records_scores_with_it(world, settings):
    settings.INGATE_RECORD_RETENTION_DAYS = 30
    old, recent = make_record(world.own.org, minutes_ago=45 * 24 * 60), make_record(world.own.org, minutes_ago=5)
    for record in (old, recent):
        score_create(actor=Actor.system("test"), record=record, name="helpful", value=1)
    if retention.is_partitioned():  # PostgreSQL: the old record's day goes as a whole partition
        day = old.created_at.date()
        retention._create_partition(day, retention.partition_name(day))
    retention.enforce_retention()
    assert list(Score.objects.values_list("record_id", flat=True)) == [recent.pk]
