"""Managing an org's bucket: through the API (admins and owners only, access keys write-only and encrypted at
rest, bad settings refused as field errors), in the admin, and from the storage page's "Run now"."""

from __future__ import annotations

import pytest
from django.test import Client

from tenancy import crypto
from tenancy.models import RunStatus, StorageExport, StorageExportRun

URL = "/ingate/api/v1/storage-exports/"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def body(org, **extra):
    return {
        "org": org.pk,
        "endpoint_url": "https://s3.eu-central-1.amazonaws.com",
        "region": "eu-central-1",
        "bucket": "acme-ingate",
        "prefix": "/ingate/prod/",
        "access_key": "AKIAIOSFODNN7EXAMPLE",
        "secret_key": SECRET,
        **extra,
    }


@pytest.fixture(autouse=True)
def _public_endpoints_resolve_here(settings, monkeypatch):
    """No DNS in the sandbox: s3.*.amazonaws.com resolves to a public address, anything else as it really does."""
    import socket

    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host.endswith(".amazonaws.com"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("52.219.170.1", 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def test_an_admin_adds_the_orgs_bucket_and_never_sees_its_keys_again(world, client_for):
    client = client_for(user=world.own.users["admin"])
    created = client.post(URL, body(world.own.org), format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert "secret_key" not in data and "access_key" not in data and SECRET not in created.content.decode()
    assert data["secret_key_hint"] == crypto.hint(SECRET) and data["prefix"] == "ingate/prod"
    stored = StorageExport.objects.get(pk=data["id"])
    assert SECRET not in stored.secret_key_encrypted and crypto.decrypt(stored.secret_key_encrypted) == SECRET
    listed = client.get(URL).json()["results"]
    assert [row["id"] for row in listed] == [data["id"]] and SECRET not in str(listed)

    changed = client.patch(f"{URL}{data['id']}/", {"every_hours": 6}, format="json")
    assert changed.status_code == 200 and changed.json()["every_hours"] == 6
    stored.refresh_from_db()
    assert crypto.decrypt(stored.secret_key_encrypted) == SECRET  # keys not sent are kept


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_viewers_and_members_neither_see_nor_add_the_bucket(world, client_for, role):
    StorageExport.objects.create(org=world.own.org, bucket="acme-ingate")
    client = client_for(user=world.own.users[role])
    listed = client.get(URL)
    assert listed.status_code == 403 and "admins and owners" in listed.json()["detail"]
    assert client.post(URL, body(world.own.org), format="json").status_code == 403
    assert StorageExport.objects.count() == 1


def test_another_orgs_admin_cannot_see_or_change_the_bucket(world, client_for):
    export = StorageExport.objects.create(org=world.own.org, bucket="acme-ingate")
    client = client_for(user=world.other.users["admin"])
    assert client.get(URL).json()["results"] == []
    assert client.patch(f"{URL}{export.pk}/", {"bucket": "mine-now"}, format="json").status_code == 404


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("bucket", "Not_A_Bucket", "lowercase letters"),
        ("bucket", "ab", "3 to 63"),
        ("prefix", "ingate//prod", "no empty"),
        ("prefix", "in gate", "Use letters"),
        ("endpoint_url", "ftp://files.example.com", "http:// or https://"),
        ("endpoint_url", "http://127.0.0.1:9000", "private or local address"),
        ("endpoint_url", "http://169.254.169.254", "private or local address"),
        ("every_hours", 0, "greater than or equal to 1"),
        ("formats", "csv", "not a valid choice"),
    ],
)
def test_bad_settings_are_refused_as_field_errors(world, client_for, field, value, message):
    client = client_for(user=world.own.users["owner"])
    answer = client.post(URL, body(world.own.org, **{field: value}), format="json")
    assert answer.status_code == 400
    assert message in " ".join(answer.json()[field]), answer.json()
    assert not StorageExport.objects.exists()


def test_a_second_bucket_for_the_same_org_is_refused(world, client_for):
    client = client_for(user=world.own.users["admin"])
    assert client.post(URL, body(world.own.org), format="json").status_code == 201
    second = client.post(URL, body(world.own.org, bucket="another"), format="json")
    assert second.status_code == 400 and "already has its bucket" in second.json()["org"][0]


def test_a_private_endpoint_is_accepted_when_the_instance_allows_it(world, client_for, settings):
    settings.INGATE_STORAGE_ALLOW_PRIVATE_ENDPOINTS = True
    client = client_for(user=world.own.users["admin"])
    answer = client.post(URL, body(world.own.org, endpoint_url="http://127.0.0.1:9000"), format="json")
    assert answer.status_code == 201


def test_runs_are_listed_for_the_orgs_admins_only(world, client_for):
    StorageExportRun.objects.create(org=world.own.org, status=RunStatus.FAILED, error="NoSuchBucket: gone")
    StorageExportRun.objects.create(org=world.other.org, status=RunStatus.SUCCEEDED)
    runs = client_for(user=world.own.users["admin"]).get("/ingate/api/v1/storage-export-runs/").json()["results"]
    assert [(r["org"], r["status"], r["error"]) for r in runs] == [(world.own.org.pk, "failed", "NoSuchBucket: gone")]
    assert client_for(user=world.own.users["viewer"]).get("/ingate/api/v1/storage-export-runs/").status_code == 403


def test_the_admin_saves_the_keys_encrypted_and_write_only(world):
    browser = Client()
    browser.force_login(world.staff)
    answer = browser.post(
        "/admin/tenancy/storageexport/add/",
        {
            "org": world.own.org.pk,
            "enabled": "on",
            "endpoint_url": "https://s3.eu-central-1.amazonaws.com",
            "region": "eu-central-1",
            "bucket": "acme-ingate",
            "prefix": "ingate",
            "access_key": "AKIAIOSFODNN7EXAMPLE",
            "secret_key": SECRET,
            "formats": "parquet",
            "include_bodies": "on",
            "every_hours": 1,
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    stored = StorageExport.objects.get(org=world.own.org)
    assert crypto.decrypt(stored.secret_key_encrypted) == SECRET
    page = browser.get(f"/admin/tenancy/storageexport/{stored.pk}/change/").content.decode()
    assert SECRET not in page and stored.secret_key_hint in page


def test_the_storage_page_runs_the_export_now_for_an_admin_and_not_for_a_viewer(
    world, django_capture_on_commit_callbacks, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded default, also when the tests run with Redis
    export = StorageExport.objects.create(org=world.own.org, bucket="acme-ingate", endpoint_url="http://127.0.0.1:9")
    admin = Client()
    admin.force_login(world.own.users["admin"])
    page = admin.get("/ingate/storage/?org=own-org").content.decode()
    assert "s3://acme-ingate/" in page and "Run now" in page and "No runs yet" in page
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin.post(f"/ingate/storage/{export.pk}/run/")
    assert answer.status_code == 302
    run = StorageExportRun.objects.get(org=world.own.org)  # eager here: the run is over
    assert run.trigger == "manual" and run.status == RunStatus.FAILED and run.error  # nothing listens on port 9
    assert "Failed" in admin.get("/ingate/storage/?org=own-org").content.decode()

    viewer = Client()
    viewer.force_login(world.own.users["viewer"])
    assert viewer.get("/ingate/storage/?org=own-org").status_code == 404  # not an org whose bucket they see
    assert viewer.post(f"/ingate/storage/{export.pk}/run/").status_code == 404
    assert StorageExportRun.objects.count() == 1
