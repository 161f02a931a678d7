"""One meaning of "failed" and "unpriced" on every page, filter, total and export; breakdown tables that add
up to the totals card, Ingate's own calls included, each row linking to the logs it counts."""

import asyncio
import csv
import datetime
import io
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability import rollups
from observability.models import FAILED, UNPRICED, RecordRollup, RequestRecord, SessionRollup

URL = "/ingate/api/v1/records/"


def make(tenant, *, internal=False, minutes_ago=5, **fields):
    values = {
        "org": tenant.org,
        "app": None if internal else tenant.app,
        "key": None if internal else tenant.key,
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "status": 200,
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "cost_total": Decimal("0.001"),
        "usage_source": "reported",
        "total_ms": 200.0,
        "created_at": timezone.now() - datetime.timedelta(minutes=minutes_ago),
    }
    values.update(fields)
    record = RequestRecord.objects.create(**values)
    rollups.apply([record])  # as the record writer does when it inserts
    return record


@pytest.fixture
def kinds(world):
    own = world.own
    return {
        "priced": make(own),
        "free": make(own, provider="ollama", endpoint="chat", model="llama3.2", cost_total=Decimal(0)),
        "no_price": make(own, model="acme-private", cost_total=None),
        "no_usage": make(
            own,
            model="acme-private",
            usage_source="none",
            input_tokens=None,
            output_tokens=None,
            total_tokens=None,
            cost_total=None,
        ),
        "rate_limited": make(own, status=429, outcome="upstream_error", cost_total=None),
        "refused": make(own, status=403, outcome="gateway_error", usage_source="none", cost_total=None),
        "cut_but_billed": make(own, outcome="upstream_cut", cost_total=Decimal("0.0005")),
        "model_list": make(
            own,
            endpoint="models",
            model="",
            usage_source="none",
            input_tokens=None,
            output_tokens=None,
            total_tokens=None,
            cost_total=None,
        ),
    }


@pytest.fixture
def browser(world):
    client = Client()
    client.force_login(world.own.users["viewer"])
    return client


def test_failed_and_unpriced_mean_the_same_in_the_database_and_on_a_record(kinds):
    assert {name for name, r in kinds.items() if r.unpriced} == {"no_price", "no_usage"}
    assert {name for name, r in kinds.items() if r.failed} == {"rate_limited", "refused", "cut_but_billed"}
    assert set(RequestRecord.objects.filter(UNPRICED)) == {r for r in kinds.values() if r.unpriced}
    assert set(RequestRecord.objects.filter(FAILED)) == {r for r in kinds.values() if r.failed}


def test_a_failed_request_is_not_labelled_unpriced_on_its_page(browser, kinds):
    page = browser.get(f"/ingate/logs/{kinds['rate_limited'].pk}/").content.decode()
    card = re.search(r'data-testid="record-cost">(.*?)</div>', page).group(1)
    assert "unpriced" not in card and "$0" not in card and "—" in card
    assert "failed: no cost" in page


def test_an_unpriced_request_says_so_on_its_page(browser, kinds):
    page = browser.get(f"/ingate/logs/{kinds['no_price'].pk}/").content.decode()
    assert 'data-cost="unpriced"' in page and "add a price override" in page


def test_a_model_list_has_no_cost_rather_than_an_unpriced_badge(browser, kinds):
    page = browser.get(f"/ingate/logs/{kinds['model_list'].pk}/").content.decode()
    assert 'data-cost="unpriced"' not in page and "not billed by the token" in page


def test_the_logs_unpriced_filter_shows_what_the_overview_card_counts(browser, kinds):
    overview = browser.get("/ingate/", {"org": "own-org"}).content.decode()
    assert "2 requests with an unknown price" in overview
    link = re.search(r'href="([^"]+)" data-testid="unpriced-link"', overview).group(1).replace("&amp;", "&")
    logs = browser.get(link).content.decode()
    assert {m for m in re.findall(r'data-record="([^"]+)"', logs)} == {
        str(kinds["no_price"].pk),
        str(kinds["no_usage"].pk),
    }


def test_a_session_of_failed_requests_shows_no_unpriced_badge_and_no_zero(browser, world):
    make(world.own, session_id="broken", status=500, outcome="upstream_error", cost_total=None)
    make(world.own, session_id="broken", status=429, outcome="upstream_error", cost_total=None)
    page = browser.get("/ingate/sessions/broken/", {"org": "own-org"}).content.decode()
    card = re.search(r'data-testid="session-cost">(.*?)</div>', page).group(1)
    assert "unpriced" not in card and "$0" not in card and "failed" in card
    listing = browser.get("/ingate/sessions/", {"org": "own-org"}).content.decode()
    row = re.search(r"broken</a>.*?</tr>", listing, re.S).group(0)
    assert "unpriced" not in row and "$0<" not in row


def test_breakdown_rows_show_unpriced_and_failed_never_zero(browser, world):
    make(world.own, model="acme-private", cost_total=None)  # entirely unpriced
    make(world.own, model="gpt-4o", cost_total=Decimal("0.5"))  # partly unpriced
    make(world.own, model="gpt-4o", cost_total=None)
    make(world.own, model="o3", status=500, outcome="upstream_error", cost_total=None)  # only failed
    page = browser.get("/ingate/", {"org": "own-org"}).content.decode()
    cells = {label: cost for label, _, _, cost in breakdown(page, "model")}
    assert 'data-cost="unpriced"' in cells["acme-private"] and "$" not in cells["acme-private"]
    assert cells["gpt-4o"].startswith("$0.5 ") and "+1 unpriced" in cells["gpt-4o"]
    assert "failed" in cells["o3"] and "$" not in cells["o3"] and "unpriced" not in cells["o3"]


def test_api_records_and_exports_say_failed_and_unpriced(transactional_db, client_for, world, kinds):
    # transactional: the export reads its rows on another thread, which only sees committed ones
    api = client_for(user=world.own.users["member"])
    shown = api.get(f"{URL}{kinds['rate_limited'].pk}/").json()
    assert shown["failed"] is True and shown["unpriced"] is False and shown["priced"] is False
    reply = api.get(f"{URL}export/", {"export_format": "csv"})

    async def read():
        return b"".join([chunk async for chunk in reply.streaming_content])

    text = asyncio.run(read()).decode()
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows[str(kinds["rate_limited"].pk)]["failed"] == "True"
    assert rows[str(kinds["rate_limited"].pk)]["unpriced"] == "False"
    assert rows[str(kinds["no_price"].pk)]["unpriced"] == "True"
    assert rows[str(kinds["model_list"].pk)]["unpriced"] == "False"


# --- breakdowns add up ----------------------------------------------------------------------------


def breakdown(page: str, name: str) -> list[tuple[str, str, int, str]]:
    """(label, link or "", requests, cost cell) per row of one breakdown table."""
    table = re.search(rf"<caption>By {name}</caption>.*?</table>", page, re.S).group(0)
    rows = []
    for row in re.findall(r"<tr class=\"[a-z]+\">(.*?)</tr>", table, re.S):
        link = re.search(r'href="([^"]+)"', row)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        label = re.sub(r"<[^>]+>", "", cells[0]).strip()
        rows.append((label, link.group(1).replace("&amp;", "&") if link else "", int(cells[1]), cells[3]))
    return rows


def test_every_breakdown_adds_up_to_the_totals_card_with_others_and_ingate_itself(browser, world):
    for n in range(13):
        make(world.own, model=f"model-{n:02}", user_id=f"user-{n}")
    make(world.own, internal=True, client="ingate-playground", model="model-00")
    make(world.own, internal=True, client="ingate-evals-judge", model="model-00")
    page = browser.get("/ingate/", {"org": "own-org"}).content.decode()
    total = int(re.search(r'data-testid="total-requests">(\d+)<', page).group(1))
    assert total == 15
    for name in ("model", "provider", "app", "key", "user"):
        rows = breakdown(page, name)
        assert sum(requests for _, _, requests, _ in rows) == total, (name, rows)
    models = breakdown(page, "model")
    assert len(models) == 11 and models[-1][0] == "others (3 more)" and models[-1][2] == 3
    for name in ("app", "key"):
        label, link, requests, _ = breakdown(page, name)[-1]
        assert (label, requests) == ("(Ingate itself)", 2)
        logs = browser.get(link).content.decode()
        assert logs.count("data-record=") == 2 and "ingate-playground" in logs
    users = breakdown(page, "user")
    assert users[-1][0] == "(no user id)" and users[-1][2] == 2


def test_each_breakdown_row_links_to_the_logs_it_counts(browser, world):
    make(world.own, model="gpt-4o", user_id="alice")
    make(world.own, model="gpt-4o", user_id="bob", provider="azure")
    make(world.own, model="claude-haiku-4-5", provider="anthropic", user_id="alice")
    page = browser.get("/ingate/", {"org": "own-org"}).content.decode()
    for name in ("model", "provider", "app", "key", "user"):
        for label, link, requests, _ in breakdown(page, name):
            assert link, (name, label)
            logs = browser.get(link).content.decode()
            assert logs.count("data-record=") == requests, (name, label, link)


def test_rebuilt_rollups_count_failed_unpriced_and_priced_as_the_writer_does(world, kinds):
    make(
        world.own, model="o3", response_model="", session_id="s", status=500, outcome="upstream_error", cost_total=None
    )
    make(world.own, model="acme-private", session_id="s", cost_total=None)

    def snapshot():
        rollup_rows = {
            (r.dimension, r.value, r.bucket): (r.requests, r.errors, r.unpriced, r.priced, r.cost)
            for r in RecordRollup.objects.filter(org=world.own.org)
        }
        sessions = {
            s.session_id: (s.requests, s.errors, s.unpriced, s.priced, s.cost)
            for s in SessionRollup.objects.filter(org=world.own.org)
        }
        return rollup_rows, sessions

    written = snapshot()
    rollups.rebuild(world.own.org.pk)
    assert snapshot() == written
    totals = RecordRollup.objects.get(org=world.own.org, dimension="all")
    assert (totals.requests, totals.errors, totals.unpriced, totals.priced) == (10, 4, 3, 3)
    assert written[1]["s"][:4] == (2, 1, 1, 0)
