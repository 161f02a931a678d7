"""The logs' search box (`?search=` on the page and the records API): full-text over a record's short text and
properties, and over prompt and answer text where the org keeps full bodies; on PostgreSQL through GIN
indexes, on SQLite through an FTS5 table that triggers keep in step with inserts and deletes."""

import pytest
from django.db import connection
from django.test import Client

from observability import search, selectors
from observability.models import BodyMode, ObservabilitySettings, RequestBody, RequestRecord

URL = "/ingate/api/v1/records/"


def record(tenant, **fields):
    values = {
        "org": tenant.org,
        "app": tenant.app,
        "key": tenant.key,
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "status": 200,
    }
    return RequestRecord.objects.create(**(values | fields))


def with_body(tenant, request_text: str, response_text: str, **fields):
    made = record(tenant, **fields)
    RequestBody.objects.create(record=made, created_at=made.created_at, request=request_text, response=response_text)
    return made


def keep_bodies(tenant):
    ObservabilitySettings.objects.update_or_create(org=tenant.org, defaults={"body_mode": BodyMode.FULL})


def found(reply) -> set[str]:
    assert reply.status_code == 200, reply.content
    return {row["id"] for row in reply.json()["results"]}


@pytest.fixture
def viewer(client_for, world):
    return client_for(user=world.own.users["viewer"])


def test_it_finds_a_record_by_a_property_value_or_its_name(world, viewer):
    tagged = record(world.own, properties={"customer_tier": "Platinum", "feature": "refunds"})
    record(world.own, properties={"customer_tier": "basic"})
    assert found(viewer.get(URL, {"search": "platinum"})) == {str(tagged.pk)}
    assert found(viewer.get(URL, {"search": "customer_tier platinum"})) == {str(tagged.pk)}


def test_it_matches_word_prefixes_and_needs_every_word(world, viewer):
    refund = record(world.own, session_id="refund-flow-42", user_id="alice@example.com")
    record(world.own, session_id="refund-other", user_id="bob@example.com")
    assert found(viewer.get(URL, {"search": "refu ali"})) == {str(refund.pk)}
    assert len(found(viewer.get(URL, {"search": "refund"}))) == 2


def test_it_finds_prompt_and_answer_text_when_the_org_keeps_full_bodies(world, viewer):
    keep_bodies(world.own)
    asked = with_body(world.own, '{"messages":[{"role":"user","content":"Where is my parcel?"}]}', "It shipped Monday.")
    with_body(world.own, '{"messages":[{"role":"user","content":"hello"}]}', "Hi there")
    assert found(viewer.get(URL, {"search": "parcel"})) == {str(asked.pk)}
    assert found(viewer.get(URL, {"search": "shipped monday"})) == {str(asked.pk)}


def test_another_orgs_bodies_and_records_never_show_up_in_a_search(world, viewer):
    keep_bodies(world.own)
    keep_bodies(world.other)
    with_body(world.other, "the secret launch plan", "noted", session_id="launch")
    assert found(viewer.get(URL, {"search": "launch"})) == set()
    assert found(viewer.get(URL, {"search": "launch", "org": "other-org"})) == set()


def test_a_deleted_record_is_no_longer_found_and_leaves_nothing_in_the_index(world, viewer):
    keep_bodies(world.own)
    gone = with_body(world.own, "tell me about zebras", "stripes", model="zebra-model")
    gone.delete()  # as retention deletes: the body goes with it
    assert found(viewer.get(URL, {"search": "zebra"})) == set()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {search.SQLITE_TABLE}")
            assert cursor.fetchone()[0] == 0


def test_a_search_of_more_than_a_dozen_words_is_a_field_error(viewer):
    reply = viewer.get(URL, {"search": " ".join(["word"] * 13)})
    assert reply.status_code == 400
    assert "at most 12 words" in str(reply.json()["search"])


def test_punctuation_alone_narrows_nothing(world, viewer):
    one = record(world.own)
    assert found(viewer.get(URL, {"search": "--"})) == {str(one.pk)}


def test_the_search_reads_the_index_rather_than_every_row(world):
    """PostgreSQL: the records' GIN index (its expression equals observability.search's, or this fails);
    SQLite: the FTS5 table."""
    for n in range(3):
        record(world.own, model=f"model-{n}")
    query = search.matching(RequestRecord.objects.all(), "model", bodies=False)
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # three rows: force the planner to show the index
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            # Each partition has its own copy of the index, attached to record_search.
            cursor.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'record_search'::regclass"
            )
            copies = [name for (name,) in cursor.fetchall()]
            assert copies and any(f"Index Scan on {name}" in plan for name in copies), plan
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            assert "VIRTUAL TABLE INDEX" in " ".join(str(row) for row in cursor.fetchall())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps bodies in the FTS5 table checked above")
def test_the_body_search_reads_its_index_on_postgresql(world):
    keep_bodies(world.own)
    with_body(world.own, "alpha", "beta")
    query = search.matching(RequestRecord.objects.all(), "alpha", bodies=True)
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        assert "body_search" in " ".join(row[0] for row in cursor.fetchall())


def test_the_logs_page_search_box_finds_an_answer_and_says_so_when_nothing_matches(world):
    keep_bodies(world.own)
    hit = with_body(world.own, "what is the capital of france", "Paris, of course.")
    browser = Client()
    browser.force_login(world.own.users["viewer"])
    page = browser.get("/ingate/logs/", {"org": "own-org", "search": "paris"}).content.decode()
    assert f'data-record="{hit.pk}"' in page and page.count("data-record=") == 1
    page = browser.get("/ingate/logs/", {"org": "own-org", "search": "berlin"}).content.decode()
    assert "No requests match these filters" in page


@pytest.mark.django_db(transaction=True)
def test_records_stored_before_the_search_index_existed_are_found_after_the_upgrade(world, client_for):
    """Migration 0013 on a database that already holds records and bodies: they are searchable at once."""
    from django.core.management import call_command

    keep_bodies(world.own)
    old = with_body(world.own, "a question about kangaroos", "they hop", session_id="legacy-session")
    try:
        call_command("migrate", "observability", "0012", verbosity=0)  # drops the index (and FTS5 table)
        call_command("migrate", "observability", verbosity=0)  # builds it again over the stored rows
        viewer = client_for(user=world.own.users["viewer"])
        assert found(viewer.get(URL, {"search": "legacy"})) == {str(old.pk)}
        assert found(viewer.get(URL, {"search": "kangaroos"})) == {str(old.pk)}
    finally:
        call_command("migrate", "observability", verbosity=0)


def test_the_newest_first_page_walks_the_time_index_instead_of_sorting_every_record(world):
    """The default page at a million records: `created_at DESC` must match the (org, created_at DESC) index, so
    the database reads 51 rows off it rather than sorting the org's records (a `NULLS LAST` on a column that is
    never NULL broke that match on PostgreSQL)."""
    for n in range(3):
        record(world.own, model=f"model-{n}")
    ordered, _ = selectors.sorted_records(RequestRecord.objects.filter(org=world.own.org), None)
    sql, params = ordered[:51].query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "Sort" not in plan.replace("Sort Key", "") and "Index Scan" in plan, plan
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
