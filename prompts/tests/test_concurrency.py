"""Label moves from many threads at once serialise: the history stays one unbroken chain."""

import threading

from django.db import close_old_connections

from prompts import services
from prompts.models import Label, LabelMove
from tenancy.audit import Actor
from tenancy.tests.factories import OrganizationFactory

SYSTEM = Actor.system("test")


def test_concurrent_label_moves_keep_one_chain_of_history(transactional_db):
    prompt = services.prompt_create(actor=SYSTEM, org=OrganizationFactory(), namespace="ops", name="triage")
    versions = [services.version_create(actor=SYSTEM, prompt=prompt, template=f"t{n}") for n in range(4)]
    errors = []

    def mover(offset: int) -> None:
        try:
            for n in range(10):
                services.label_set(actor=SYSTEM, prompt=prompt, name="production", version=versions[(n + offset) % 4])
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=mover, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    moves = list(LabelMove.objects.filter(prompt=prompt).order_by("pk"))
    assert len(moves) == 40
    assert moves[0].from_version is None
    for before, after in zip(moves, moves[1:], strict=False):
        assert after.from_version_id == before.to_version_id  # nobody read a label another thread was moving
    assert Label.objects.get(prompt=prompt, name="production").version_id == moves[-1].to_version_id
