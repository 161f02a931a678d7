"""Query parameters the API once answered with a 500: each is now a field error (400, DRF JSON) naming the
parameter, and the values around them still work."""

import base64
import datetime

import pytest
from django.utils import timezone

from evals import services as eval_services
from evals.transfer import clean_item
from observability.models import RequestRecord
from tenancy.audit import Actor
from tenancy.models import Scope
from tenancy.tests.factories import make_key

RECORDS = "/ingate/api/v1/records/"
ENDPOINTS = ["", "sessions/", "totals/", "series/", "export/"]
SYSTEM = Actor.system("test")


@pytest.fixture
def admin(client_for, world):
    _, plaintext = make_key(app=world.own.app, scopes=list(Scope.values))
    return client_for(key=plaintext)


@pytest.fixture
def recent(world):
    own = world.own
    return RequestRecord.objects.create(
        org=own.org,
        app=own.app,
        key=own.key,
        provider="openai",
        endpoint="chat.completions",
        model="gpt-4o-mini",
        status=200,
        session_id="s1",
        created_at=timezone.now() - datetime.timedelta(minutes=5),
    )


def field_error(reply, name: str) -> str:
    assert reply.status_code == 400, reply.content
    assert reply["Content-Type"].startswith("application/json")
    errors = reply.json()[name]
    return errors if isinstance(errors, str) else " ".join(errors)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("param", ["since", "until"])
@pytest.mark.parametrize("offset", ["+22:00", "-16:00", "+23:59"])
def test_an_offset_postgresql_refuses_is_a_field_error_on_every_records_endpoint(
    admin, recent, endpoint, param, offset
):
    # The export too: it is refused before the stream starts, as JSON, not as a dropped connection.
    reply = admin.get(f"{RECORDS}{endpoint}", {param: f"2026-01-01T00:00:00{offset}"})
    assert "between -15:59 and +15:59" in field_error(reply, param)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00"])
def test_a_date_time_past_year_9999_or_before_year_1_in_utc_is_a_field_error(admin, recent, endpoint, value):
    assert "years 1 and 9999" in field_error(admin.get(f"{RECORDS}{endpoint}", {"since": value}), "since")


def test_offsets_up_to_15_59_still_filter_by_the_instant_they_name(admin, recent):
    just_before = (recent.created_at - datetime.timedelta(seconds=1)).astimezone(
        datetime.timezone(datetime.timedelta(hours=15, minutes=59))
    )
    reply = admin.get(RECORDS, {"since": just_before.isoformat()})
    assert [row["id"] for row in reply.json()["results"]] == [str(recent.pk)]
    just_after = (recent.created_at + datetime.timedelta(seconds=1)).astimezone(
        datetime.timezone(-datetime.timedelta(hours=15, minutes=59))
    )
    assert admin.get(f"{RECORDS}totals/", {"since": just_after.isoformat()}).json()["requests"] == 0


def test_a_property_name_is_a_json_key_never_a_lookup(admin, world):
    own = world.own
    tagged = RequestRecord.objects.create(
        org=own.org,
        app=own.app,
        provider="openai",
        endpoint="chat.completions",
        status=200,
        properties={"env": "prod", "a__regex": "("},
    )
    assert admin.get(RECORDS, {"property": "a__regex:("}).json()["results"][0]["id"] == str(tagged.pk)
    assert admin.get(RECORDS, {"property": "env__regex:("}).json()["results"] == []
    assert admin.get(RECORDS, {"property": "env:prod"}).json()["results"][0]["id"] == str(tagged.pk)


def test_a_forged_cursor_with_a_bad_offset_is_an_invalid_cursor(admin, recent):
    forged = base64.b64encode(b"p=2026-01-01T00:00:00+22:00").decode()
    reply = admin.get(RECORDS, {"cursor": forged})
    assert reply.status_code == 404 and reply.json()["detail"] == "Invalid cursor"


def test_the_cursors_the_api_hands_out_still_page(admin, world, recent):
    own = world.own
    RequestRecord.objects.create(org=own.org, app=own.app, provider="openai", endpoint="chat.completions", status=200)
    first = admin.get(RECORDS, {"limit": 1}).json()
    second = admin.get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == [str(recent.pk)]


@pytest.fixture
def dataset(world):
    return eval_services.dataset_create(
        actor=SYSTEM, org=world.own.org, name="d", items=[clean_item({"input": "2+2?", "expected": "4"})]
    )


@pytest.mark.parametrize("version", ["²", "-1", "1.0", "99999999999999999999999"])
def test_a_dataset_version_that_is_not_a_plain_number_is_a_field_error(admin, dataset, version):
    for action in ("export", "items"):
        assert (
            field_error(admin.get(f"/ingate/api/v1/datasets/{dataset.pk}/{action}/", {"version": version}), "version")
            == "A version number."
        )


def test_a_results_target_that_is_not_a_plain_number_is_a_field_error(admin, world, dataset):
    run = eval_services.run_create(
        actor=SYSTEM,
        org=world.own.org,
        dataset_version=dataset.latest,
        targets=[{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}],
        evaluators=[{"kind": "exact_match"}],
        queue=False,
    )
    reply = admin.get(f"/ingate/api/v1/eval-runs/{run.pk}/results/", {"target": "²"})
    assert field_error(reply, "target").startswith("A target position")
    assert admin.get(f"/ingate/api/v1/eval-runs/{run.pk}/results/", {"target": "0"}).status_code == 200


def test_a_comparison_target_with_superscript_digits_is_a_field_error(admin):
    reply = admin.get("/ingate/api/v1/eval-comparisons/", {"a": "²", "b": "1:²"})
    assert "run id" in field_error(reply, "a")
