"""An org's records written to its own bucket, against a real S3-compatible server on loopback (moto in server
mode, reached with boto3): Parquet whose rows are the records, the same objects on every run (nothing doubled),
a bucket that cannot be written fails the run visibly and a later run catches up, and an org that keeps its
bodies only in its bucket has none in Ingate's database."""

from __future__ import annotations

import datetime
import io
import json
import time

import boto3
import openai
import pyarrow.parquet as pq
import pytest
from django.test import Client
from django.utils import timezone
from moto.server import ThreadedMotoServer

from observability.export import runs
from observability.export.models import PendingBody
from observability.models import BodyMode, ObservabilitySettings, RequestBody, RequestRecord
from observability.retention import enforce_retention
from tenancy.audit import Actor
from tenancy.models import RunStatus, StorageExport, StorageExportRun
from tenancy.storage import storage_export_create, storage_export_update
from tenancy.tests.factories import AppFactory, MembershipFactory, OrganizationFactory, UserFactory, make_key

LATER = datetime.timedelta(hours=2)  # runs look at hours that ended (and settled); the records are from now


@pytest.fixture(autouse=True)
def _loopback_endpoints_allowed(settings):
    settings.INGATE_STORAGE_ALLOW_PRIVATE_ENDPOINTS = True  # the S3 server of these tests is on loopback


@pytest.fixture(scope="module")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, request):
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG",
    )
    client.url = s3_server
    return client


def new_bucket(s3, name: str) -> str:
    s3.create_bucket(Bucket=name)
    return name


def bucket_export(org, s3, bucket: str, **fields) -> StorageExport:
    return storage_export_create(
        actor=Actor.system("test"),
        org=org,
        endpoint_url=s3.url,
        region="us-east-1",
        bucket=bucket,
        prefix="ingate/prod",
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG",
        **fields,
    )


def keys_in(s3, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def parquet_rows(s3, bucket: str, key: str) -> list[dict]:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).to_pylist()


def chat(gateway, plaintext, text="Say hello to me") -> str:
    client = openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0)
    answer = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )
    return answer.headers["x-ingate-request-id"]


def stored(*request_ids) -> None:
    deadline = time.monotonic() + 5
    while RequestRecord.objects.filter(pk__in=request_ids).count() < len(request_ids):
        assert time.monotonic() < deadline, "the records were not written"
        time.sleep(0.02)


def hour_key(kind: str, ext: str = "parquet") -> str:
    hour = runs.floor_hour(timezone.now())
    return f"ingate/prod/{kind}/date={hour:%Y-%m-%d}/part-{hour:%H}.{ext}"


def test_records_arrive_as_parquet_whose_rows_are_the_records_and_a_second_run_doubles_nothing(
    recording, gateway_key, fake, s3
):
    key, plaintext = gateway_key
    ObservabilitySettings.objects.create(org=key.org, body_mode=BodyMode.FULL)
    ids = [chat(recording, plaintext, f"question number {n}") for n in range(3)]
    stored(*ids)
    export = bucket_export(key.org, s3, new_bucket(s3, "acme-records"))

    run = runs.export_org(key.org_id, now=timezone.now() + LATER)
    assert run.status == RunStatus.SUCCEEDED and run.records == 3 and run.bodies == 3, run.error
    rows = parquet_rows(s3, "acme-records", hour_key("records"))
    records = {str(r.pk): r for r in RequestRecord.objects.filter(org=key.org)}
    assert sorted(row["id"] for row in rows) == sorted(records) == sorted(ids)
    for row in rows:
        record = records[row["id"]]
        assert row["org_id"] == key.org_id and row["app_id"] == key.app_id and row["key_id"] == key.pk
        assert row["model"] == record.model and row["status"] == record.status == 200
        assert row["input_tokens"] == record.input_tokens and row["output_tokens"] == record.output_tokens
        assert row["cost_total"] == record.cost_total and row["created_at"] == record.created_at
    bodies = parquet_rows(s3, "acme-records", hour_key("bodies"))
    assert sorted(row["record_id"] for row in bodies) == sorted(ids)
    assert any("question number 1" in row["request"] for row in bodies)
    export.refresh_from_db()
    assert export.exported_until == runs.floor_hour(timezone.now() + LATER - runs.SETTLE)

    # Done again over the same hours: the same objects, rewritten, with the same rows.
    before = keys_in(s3, "acme-records")
    StorageExport.objects.filter(pk=export.pk).update(exported_until=None)
    again = runs.export_org(key.org_id, now=timezone.now() + LATER)
    assert again.status == RunStatus.SUCCEEDED and again.records == 3
    assert keys_in(s3, "acme-records") == before == [hour_key("bodies"), hour_key("records")]
    assert len(parquet_rows(s3, "acme-records", hour_key("records"))) == 3
    # Nothing new: a run writes nothing and doubles nothing.
    third = runs.export_org(key.org_id, now=timezone.now() + LATER)
    assert third.status == RunStatus.SUCCEEDED and third.records == 0 and third.written == []
    assert len(parquet_rows(s3, "acme-records", hour_key("records"))) == 3


def test_json_lines_go_along_when_chosen(recording, gateway_key, fake, s3):
    key, plaintext = gateway_key
    request_id = chat(recording, plaintext)
    stored(request_id)
    bucket_export(key.org, s3, new_bucket(s3, "acme-jsonl"), formats="parquet+jsonl")
    assert runs.export_org(key.org_id, now=timezone.now() + LATER).status == RunStatus.SUCCEEDED
    lines = s3.get_object(Bucket="acme-jsonl", Key=hour_key("records", "jsonl"))["Body"].read().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [request_id]
    assert hour_key("records") in keys_in(s3, "acme-jsonl")


def test_a_bucket_gets_only_its_own_orgs_records(recording, gateway_key, fake, s3):
    key, plaintext = gateway_key
    other_key, other_plaintext = make_key(app=AppFactory(org=OrganizationFactory(slug="globex")))
    mine, theirs = chat(recording, plaintext), chat(recording, other_plaintext)
    stored(mine, theirs)
    bucket_export(key.org, s3, new_bucket(s3, "acme-only"))
    runs.export_org(key.org_id, now=timezone.now() + LATER)
    assert [row["id"] for row in parquet_rows(s3, "acme-only", hour_key("records"))] == [mine]
    assert runs.export_org(other_key.org_id, now=timezone.now() + LATER) is None  # globex has no bucket


def test_a_bucket_that_cannot_be_written_fails_the_run_visibly_and_a_later_run_catches_up(
    recording, gateway_key, fake, s3
):
    key, plaintext = gateway_key
    request_id = chat(recording, plaintext)
    stored(request_id)
    export = bucket_export(key.org, s3, "not-created-yet")

    assert runs.export_due(now=timezone.now() + LATER) == 1
    run = StorageExportRun.objects.get(org=key.org)
    assert run.status == RunStatus.FAILED and "NoSuchBucket" in run.error and "wJalr" not in run.error
    export.refresh_from_db()
    assert export.exported_until is None  # the watermark did not move
    assert RequestRecord.objects.filter(pk=request_id).exists()  # the records stay in Ingate

    health = Client().get("/ingate/health").json()
    assert health["checks"]["storage_exports"]["status"] == "failing"
    assert health["checks"]["storage_exports"]["failing"] == 1
    admin = MembershipFactory(org=key.org, user=UserFactory(username="boss"), role="admin").user
    browser = Client()
    browser.force_login(admin)
    page = browser.get("/ingate/storage/").content.decode()
    assert "Failed" in page and "NoSuchBucket" in page and "not-created-yet" in page

    new_bucket(s3, "not-created-yet")
    assert runs.export_due(now=timezone.now() + LATER) == 1
    latest = StorageExportRun.objects.filter(org=key.org).first()
    assert latest.status == RunStatus.SUCCEEDED and latest.records == 1
    assert [row["id"] for row in parquet_rows(s3, "not-created-yet", hour_key("records"))] == [request_id]
    assert Client().get("/ingate/health").json()["checks"]["storage_exports"]["status"] == "ok"


def test_bodies_only_in_my_bucket_keeps_no_bodies_in_the_database(recording, gateway_key, fake, s3):
    key, plaintext = gateway_key
    ObservabilitySettings.objects.create(org=key.org, body_mode=BodyMode.FULL)
    bucket_export(key.org, s3, new_bucket(s3, "acme-bodies"), bodies_only_in_bucket=True)
    first = chat(recording, plaintext, "a secret plan")
    stored(first)
    assert not RequestBody.objects.filter(record_id=first).exists()
    assert PendingBody.objects.filter(org=key.org).count() == 1  # waiting for the run, not shown anywhere

    assert runs.export_org(key.org_id, now=timezone.now() + LATER).status == RunStatus.SUCCEEDED
    assert not PendingBody.objects.exists() and not RequestBody.objects.exists()
    (body,) = parquet_rows(s3, "acme-bodies", hour_key("bodies"))
    assert body["record_id"] == first and "a secret plan" in body["request"] and body["response"]

    second = chat(recording, plaintext, "another plan")
    stored(second)
    run = runs.export_org(key.org_id, now=timezone.now() + LATER)
    assert run.status == RunStatus.SUCCEEDED and run.bodies == 1
    bodies = parquet_rows(s3, "acme-bodies", hour_key("bodies"))
    assert sorted(row["record_id"] for row in bodies) == sorted([first, second])  # merged, nothing doubled
    assert not RequestBody.objects.exists()


def test_without_celery_beat_the_record_writer_runs_the_export(recording, gateway_key, fake, s3, settings):
    settings.REDIS_URL = ""  # the embedded mode, also when the tests run with Redis
    settings.INGATE_STORAGE_EXPORT_SECONDS = 0.05  # what beat would ask every 5 minutes
    key, plaintext = gateway_key
    ObservabilitySettings.objects.create(org=key.org, body_mode=BodyMode.FULL)
    bucket_export(key.org, s3, new_bucket(s3, "acme-embedded"), bodies_only_in_bucket=True)
    request_id = chat(recording, plaintext, "kept only in the bucket")
    stored(request_id)
    deadline = time.monotonic() + 10
    while hour_key("bodies") not in keys_in(s3, "acme-embedded"):
        assert time.monotonic() < deadline, "no run wrote the bodies"
        time.sleep(0.05)
    assert [row["record_id"] for row in parquet_rows(s3, "acme-embedded", hour_key("bodies"))] == [request_id]
    assert StorageExportRun.objects.filter(org=key.org, status=RunStatus.SUCCEEDED).exists()
    assert not PendingBody.objects.exists()
    # No new round, and the one in flight done, before the test database is emptied (a round reading it then
    # would deadlock the flush).
    settings.INGATE_STORAGE_EXPORT_SECONDS = 3600
    assert runs._embedded_lock.acquire(timeout=10)
    runs._embedded_lock.release()


def test_bodies_waiting_for_a_bucket_that_never_takes_them_go_with_the_orgs_retention(gateway_key):
    key, _ = gateway_key
    ObservabilitySettings.objects.create(org=key.org, retention_days=7)
    old, recent = timezone.now() - datetime.timedelta(days=8), timezone.now() - datetime.timedelta(days=1)
    PendingBody.objects.create(record_id="00000000-0000-4000-8000-000000000001", org=key.org, created_at=old)
    PendingBody.objects.create(record_id="00000000-0000-4000-8000-000000000002", org=key.org, created_at=recent)
    enforce_retention()
    assert [str(pk) for pk in PendingBody.objects.values_list("pk", flat=True)] == [
        "00000000-0000-4000-8000-000000000002"
    ]


def test_a_busy_hour_is_written_in_chunks_into_one_object_per_hour(recording, gateway_key, fake, s3, monkeypatch):
    monkeypatch.setattr(runs, "_CHUNK", 2)  # as if the hour held many thousands of records
    key, plaintext = gateway_key
    ObservabilitySettings.objects.create(org=key.org, body_mode=BodyMode.FULL)
    ids = [chat(recording, plaintext, f"question {n}") for n in range(5)]
    stored(*ids)
    bucket_export(key.org, s3, new_bucket(s3, "acme-busy"), formats="parquet+jsonl")
    run = runs.export_org(key.org_id, now=timezone.now() + LATER)
    assert run.status == RunStatus.SUCCEEDED and (run.records, run.bodies) == (5, 5)
    data = s3.get_object(Bucket="acme-busy", Key=hour_key("records"))["Body"].read()
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 3
    expected = [str(pk) for pk in RequestRecord.objects.order_by("created_at", "id").values_list("pk", flat=True)]
    assert [row["id"] for row in parquet_rows(s3, "acme-busy", hour_key("records"))] == expected
    assert sorted(row["record_id"] for row in parquet_rows(s3, "acme-busy", hour_key("bodies"))) == sorted(ids)
    lines = s3.get_object(Bucket="acme-busy", Key=hour_key("bodies", "jsonl"))["Body"].read().splitlines()
    assert len(lines) == 5


def test_celery_beat_runs_the_due_exports_every_few_minutes(settings):
    from observability import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["storage-export"]
    assert entry["task"] == tasks.export_storage.name
    assert entry["schedule"] == settings.INGATE_STORAGE_EXPORT_SECONDS == 300


def test_turning_bodies_only_in_my_bucket_on_applies_at_once_and_moves_the_bodies_kept_before(
    recording, gateway_key, fake, s3
):
    key, plaintext = gateway_key
    ObservabilitySettings.objects.create(org=key.org, body_mode=BodyMode.FULL)
    export = bucket_export(key.org, s3, new_bucket(s3, "acme-switch"))
    before = chat(recording, plaintext, "said before")
    stored(before)
    assert RequestBody.objects.filter(record_id=before).exists()  # kept in Ingate, as the option is off

    storage_export_update(actor=Actor.system("test"), export=export, bodies_only_in_bucket=True)
    after = chat(recording, plaintext, "said after")  # the writer heard of the change: no 30 s wait
    stored(after)
    assert PendingBody.objects.filter(record_id=after).exists() and not RequestBody.objects.filter(record_id=after)

    assert runs.export_org(key.org_id, now=timezone.now() + LATER).status == RunStatus.SUCCEEDED
    assert not RequestBody.objects.exists() and not PendingBody.objects.exists()
    bodies = parquet_rows(s3, "acme-switch", hour_key("bodies"))
    assert sorted(row["record_id"] for row in bodies) == sorted([before, after])
