"""Daily partitions on PostgreSQL, and retention: whole partitions dropped, shorter org retention deleted."""

import datetime
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from ingate.celery import app as celery_app
from observability import retention
from observability.models import ObservabilitySettings, RequestBody, RequestRecord
from tenancy.tests.factories import OrganizationFactory

on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are a PostgreSQL feature")


def make(org, days_ago: float, with_body=False):
    at = timezone.now() - datetime.timedelta(days=days_ago)
    record = RequestRecord.objects.create(id=uuid.uuid4(), org=org, provider="openai", endpoint="chat", created_at=at)
    if with_body:
        RequestBody.objects.create(record=record, created_at=at, request="{}")
    return record


def partition_of(record) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT tableoid::regclass::text FROM "{retention.TABLE}" WHERE id = %s', [record.pk])
        return cursor.fetchone()[0]


@on_postgresql
def test_records_land_in_the_partition_of_their_day(db):
    assert retention.is_partitioned()
    record = make(OrganizationFactory(), 0)
    assert partition_of(record) == retention.partition_name(record.created_at.date())


@on_postgresql
def test_a_record_outside_the_prepared_days_moves_when_its_day_gets_a_partition(db):
    old = make(OrganizationFactory(), 20)
    assert partition_of(old) == f"{retention.TABLE}_default"
    day = old.created_at.date()
    retention._create_partition(day, retention.partition_name(day))
    assert partition_of(old) == retention.partition_name(day)
    assert RequestRecord.objects.filter(pk=old.pk).count() == 1


@on_postgresql
def test_partitions_no_org_needs_any_more_are_dropped_with_their_bodies(db, settings):
    settings.INGATE_RECORD_RETENTION_DAYS = 30
    org = OrganizationFactory()
    expired = make(org, 45, with_body=True)
    kept = make(org, 10)
    day = expired.created_at.date()
    retention._create_partition(day, retention.partition_name(day))
    result = retention.enforce_retention()
    assert result["partitions_dropped"] >= 1
    assert retention.partition_name(day) not in retention.partitions()
    assert not RequestRecord.objects.filter(pk=expired.pk).exists()
    assert not RequestBody.objects.filter(pk=expired.pk).exists()
    assert RequestRecord.objects.filter(pk=kept.pk).exists()
    assert retention.partition_name(timezone.now().date() + datetime.timedelta(days=7)) in retention.partitions()


def test_an_org_that_keeps_less_loses_its_older_rows_and_only_those(db, settings):
    settings.INGATE_RECORD_RETENTION_DAYS = 30
    brief, other = OrganizationFactory(), OrganizationFactory()
    ObservabilitySettings.objects.create(org=brief, retention_days=7)
    brief_old, brief_new = make(brief, 8, with_body=True), make(brief, 1)
    other_old = make(other, 8)
    result = retention.enforce_retention()
    assert result["records_deleted"] == 1
    assert set(RequestRecord.objects.values_list("pk", flat=True)) == {brief_new.pk, other_old.pk}
    assert not RequestBody.objects.filter(pk=brief_old.pk).exists()
    assert retention.enforce_retention()["records_deleted"] == 0  # idempotent


def test_retention_runs_hourly_from_celery_beat(db):
    celery_app.loader.import_default_modules()  # what a worker does at start: autodiscover the apps' tasks
    assert celery_app.conf.beat_schedule["records-retention"]["task"] == "observability.enforce_retention"
    assert "observability.enforce_retention" in celery_app.tasks
    assert celery_app.tasks["observability.enforce_retention"].apply().get() == {
        "partitions_dropped": 0,
        "records_deleted": 0,
    }


def test_without_redis_the_gateways_own_writer_enforces_retention(transactional_db, settings):
    from observability.pipeline import RecordPipeline

    settings.REDIS_URL = ""  # the embedded mode: no celery beat runs
    org = OrganizationFactory()
    ObservabilitySettings.objects.create(org=org, retention_days=7)
    make(org, 8)  # past the org's retention
    recent = make(org, 1)
    RecordPipeline().flush()
    assert set(RequestRecord.objects.values_list("pk", flat=True)) == {recent.pk}  # the older one is gone
