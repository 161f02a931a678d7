"""Gateway key lifecycle: create, use, expire, revoke; stored as prefix + digest only."""

import datetime

import pytest
from django.db import connection
from django.utils import timezone

from tenancy import keys, services
from tenancy.audit import Actor
from tenancy.models import APIKey, AuditLog
from tenancy.tests.factories import AppFactory, make_key

pytestmark = pytest.mark.django_db


def test_a_new_key_is_shown_once_and_only_its_prefix_and_digest_are_stored():
    key, plaintext = make_key()
    assert plaintext.startswith("sk-ingate-") and len(plaintext) == len("sk-ingate-") + 52
    assert plaintext.startswith(f"sk-ingate-{key.prefix}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tenancy_apikey WHERE id = %s", [key.pk])
        row = " ".join(str(v) for v in cursor.fetchone())
    assert plaintext not in row
    assert plaintext[len("sk-ingate-") + keys.PREFIX_LENGTH :] not in row
    assert key.digest == keys.digest(plaintext)


def test_it_accepts_a_fresh_key_and_answers_who_it_is(client_for):
    key, plaintext = make_key(scopes=["proxy", "logs:read"])
    body = client_for(key=plaintext).get("/ingate/api/v1/me/").json()
    assert body["type"] == "key" and body["scopes"] == ["proxy", "logs:read"]
    assert body["org"] == key.org.slug


@pytest.mark.parametrize(
    "presented,reason",
    [
        ("sk-ingate-short", "Malformed gateway key"),
        ("sk-live-" + "a" * 52, "Malformed gateway key"),
        ("sk-ingate-" + "A" * 52, "Unknown gateway key"),
    ],
)
def test_it_rejects_malformed_and_unknown_keys_with_401_naming_the_reason(client_for, presented, reason):
    response = client_for(key=presented).get("/ingate/api/v1/me/")
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    assert presented not in response.content.decode()


def test_it_rejects_a_key_whose_secret_part_is_wrong(client_for):
    _, plaintext = make_key()
    forged = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
    response = client_for(key=forged).get("/ingate/api/v1/me/")
    assert response.status_code == 401 and "Unknown gateway key" in response.json()["detail"]


def test_it_rejects_a_revoked_key(client_for):
    key, plaintext = make_key()
    services.api_key_revoke(actor=Actor.system("test"), key=key)
    response = client_for(key=plaintext).get("/ingate/api/v1/me/")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_it_rejects_an_expired_key(client_for):
    key, plaintext = make_key(expires_at=timezone.now() + datetime.timedelta(hours=1))
    assert client_for(key=plaintext).get("/ingate/api/v1/me/").status_code == 200
    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    response = client_for(key=plaintext).get("/ingate/api/v1/me/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_a_key_cannot_be_created_already_expired():
    with pytest.raises(Exception, match="future"):
        make_key(expires_at=timezone.now() - datetime.timedelta(minutes=1))


def test_a_key_keeps_working_after_secret_key_rotation_when_the_old_one_is_a_fallback(client_for, settings):
    _, plaintext = make_key()
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-secret-key-for-this-instance-0123456789"
    assert client_for(key=plaintext).get("/ingate/api/v1/me/").status_code == 200


def test_last_used_is_written_at_most_once_a_minute(client_for):
    key, plaintext = make_key()
    client = client_for(key=plaintext)
    client.get("/ingate/api/v1/me/")
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    client.get("/ingate/api/v1/me/")
    key.refresh_from_db()
    assert key.last_used_at == first
    later = first + datetime.timedelta(seconds=61)
    assert services.api_key_mark_used(key_id=key.pk, at=later, last_used_at=key.last_used_at) is True
    key.refresh_from_db()
    assert key.last_used_at == later


def test_creating_and_revoking_a_key_is_audited_without_the_secret():
    key, plaintext = make_key()
    services.api_key_revoke(actor=Actor.system("test"), key=key)
    entries = AuditLog.objects.filter(object_type="tenancy.APIKey", object_id=str(key.pk))
    assert set(entries.values_list("action", flat=True)) == {"key_create", "key_revoke"}
    for entry in entries:
        assert plaintext not in str(entry.changes) and key.digest not in str(entry.changes)


def test_revoking_twice_writes_one_audit_entry():
    key, _ = make_key()
    actor = Actor.system("test")
    services.api_key_revoke(actor=actor, key=key)
    services.api_key_revoke(actor=actor, key=key)
    assert AuditLog.objects.filter(action="key_revoke", object_id=str(key.pk)).count() == 1


def test_unknown_scopes_are_refused_with_the_known_list():
    with pytest.raises(Exception, match="Unknown scope"):
        make_key(app=AppFactory(), scopes=["proxy", "root"])
