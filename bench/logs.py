"""The logs page and the records API at a million records on PostgreSQL: search (records and kept bodies),
partial filters, time ranges, sorting, deep pages. Seeds a throw-away database with one INSERT … SELECT over
generate_series (no Python per row), then times each query through Django's test client and prints a table.
Run from the repo root: `.venv/bin/python bench/logs.py [--records 1000000] [--bodies 0.2] [--keep]`."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_MS = 300

# SQL expressions per column for row `g` of generate_series (the rest take the model field's default). The
# newest day is the busiest (random()^2), as in bench/dashboard.py; ~3% failed; 60 words of properties.
MODELS = "(ARRAY['gpt-4o-mini','gpt-4.1','claude-sonnet-4-5','claude-haiku-4-5','gemini-2.5-flash','llama3.2'])"
PROVIDERS = "(ARRAY['openai','openai','anthropic','anthropic','gemini','ollama'])"
WORDS = (
    "(ARRAY['refunds','billing','search','onboarding','support','checkout','invoice','shipping','returns',"
    "'translate','summary','classify','extract','agent','coding','review','triage','draft','email','chat'])"
)
RECORD_COLUMNS = {
    "id": "gen_random_uuid()",
    "org_id": "%(org)s",
    "app_id": "%(app)s",
    "key_id": "%(key)s",
    "created_at": "now() - random() ^ 2 * interval '30 days'",
    "provider": f"{PROVIDERS}[1 + g %% 6]",
    "endpoint": "'chat.completions'",
    "model": f"{MODELS}[1 + g %% 6]",
    "response_model": f"{MODELS}[1 + g %% 6]",
    "status": "CASE WHEN g %% 33 = 0 THEN 429 ELSE 200 END",
    "outcome": "CASE WHEN g %% 33 = 0 THEN 'upstream_error' ELSE 'ok' END",
    "error": "CASE WHEN g %% 33 = 0 THEN 'Rate limit reached for requests per minute' ELSE '' END",
    "stream": "g %% 2 = 0",
    "input_tokens": "200 + (g * 7919) %% 40000",
    "output_tokens": "10 + (g * 104729) %% 2000",
    "total_tokens": "210 + (g * 7919) %% 40000 + (g * 104729) %% 2000",
    "usage_source": "'reported'",
    "cost_total": "CASE WHEN g %% 6 = 5 THEN 0 ELSE ((g * 7919) %% 40000) / 1e6 * 2.5 END",
    "total_ms": "300 + random() * 9000",
    "upstream_ms": "100 + random() * 800",
    "overhead_ms": "random()",
    "session_id": "'s-' || (g %% 20000)",
    "user_id": "'user-' || (g %% 300)",
    "client": "(ARRAY['claude-code','openai-python','aider','cursor','anthropic-python'])[1 + g %% 5]",
    "properties": f"jsonb_build_object('feature', {WORDS}[1 + g %% 20], 'tenant', 't-' || (g %% 1000))",
    "cache_hit": "g %% 20 = 0",
    "route": "CASE WHEN g %% 10 = 0 THEN 'smart' ELSE '' END",
}


def _literal(field) -> str:
    default = field.get_default()
    if default is None:
        return "NULL"
    if field.get_internal_type() == "JSONField":
        return "'" + ("[]" if default == [] else "{}") + "'::jsonb"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, int | float):
        return str(default)
    return "'" + str(default).replace("'", "''") + "'"


def seed(count: int, *, org_id: int, app_id: int, key_id: int, bodies: float) -> None:
    """`count` records over the last 30 days in one statement per 250k, and bodies for a share of them."""
    from django.db import connection

    from observability.models import RequestBody, RequestRecord

    fields = RequestRecord._meta.concrete_fields
    columns = ", ".join(f'"{f.column}"' for f in fields)
    values = ", ".join(RECORD_COLUMNS.get(f.column, _literal(f)) for f in fields)
    table = RequestRecord._meta.db_table
    step = 250_000
    with connection.cursor() as cursor:
        for start in range(0, count, step):
            cursor.execute(
                f'INSERT INTO "{table}" ({columns}) SELECT {values} FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g',
                {"org": org_id, "app": app_id, "key": key_id, "lo": start + 1, "hi": min(start + step, count)},
            )
            print(f"  seeded {min(start + step, count):,}", file=sys.stderr, flush=True)
        if bodies:
            # Every n-th record gets a prompt and an answer of a few dozen words, one of them rare (order-<g>).
            cursor.execute(
                f'INSERT INTO "{RequestBody._meta.db_table}" (record_id, created_at, metadata, request, response, truncated) '
                "SELECT id, created_at, '{}'::jsonb, "
                '\'{"messages":[{"role":"user","content":"Question about \' || (properties->>\'feature\') || '
                "' for order-' || row_number() OVER () || ': please help with the ' || model || ' answer\"}]}', "
                "'Here is what I found about ' || (properties->>'feature') || '. The order ships next week.', false "
                f'FROM "{table}" WHERE random() < %s',
                [bodies],
            )
            print(f"  bodies for {cursor.rowcount:,} records", file=sys.stderr, flush=True)
        cursor.execute(f'VACUUM ANALYZE "{table}"')
        cursor.execute(f'VACUUM ANALYZE "{RequestBody._meta.db_table}"')


def timed(client, url: str, runs: int) -> tuple[float, float]:
    client.get(url)  # warm the caches of plans and pages
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        reply = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200, (url, reply.status_code)
    return statistics.median(samples), max(samples)


def cases() -> list[tuple[str, str]]:
    logs, api = "/ingate/logs/?", "/ingate/api/v1/records/?"
    week = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")

    def page(**query) -> str:
        return logs + urlencode({"org": "bench", **query})

    return [
        ("logs, newest first", page()),
        ("logs, last 24 h", page(range="24h")),
        ("logs, last 15 min", page(range="15m")),
        ("logs, custom range (7 to 1 days ago)", page(since=week, until=day)),
        ("logs, page 20", page(page=20)),
        ("search, common word (sonnet)", page(search="sonnet")),
        ("search, property value (checkout)", page(search="checkout")),
        ("search, rare words (t-777 coding)", page(search="t-777 coding")),
        ("search, in bodies only (order-4242)", page(search="order-4242")),
        ("search, nothing matches", page(search="zzzyx-nothing")),
        ("search + last 24 h (rate limit)", page(search="rate limit", range="24h")),
        ("filter, model partial (haiku)", page(model="haiku")),
        ('filter, model exact ("gpt-4.1")', page(model='"gpt-4.1"')),
        ("filter, user partial (user-42)", page(user="user-42")),
        ("filter, cost ≥ $0.09", page(cost_min="0.09")),
        ("filter, latency 5–6 s, last 7 days", page(latency_min="5000", latency_max="6000", range="7d")),
        ("filter, failed only", page(errors="true")),
        ("filter, cache hits", page(cache_hit="true")),
        ("sort, dearest first, last 24 h", page(sort="-cost", range="24h")),
        ("sort, slowest first, last 7 days", page(sort="-latency", range="7d")),
        ("sort, dearest first, all time", page(sort="-cost")),
        ("API list, search (checkout)", api + urlencode({"org": "bench", "search": "checkout", "limit": 50})),
        ("API list, filters", api + urlencode({"org": "bench", "model": "sonnet", "errors": "true", "limit": 50})),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--bodies", type=float, default=0.2, help="share of records with kept bodies (0 to 1)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--database", default="ingate_bench_logs", help="dropped and created afresh (default %(default)s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--only", help="time only the cases whose name contains this")
    args = parser.parse_args()
    database = args.database
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", database], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], check=True)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("INGATE_DATA_DIR", "/tmp/ingate-bench-logs")
    Path(os.environ["INGATE_DATA_DIR"]).mkdir(exist_ok=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "ingate.settings"
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    from observability.models import BodyMode, ObservabilitySettings
    from observability.retention import ensure_partitions
    from tenancy.models import Membership, Role
    from tenancy.tests.factories import AppFactory, OrganizationFactory, UserFactory, make_key

    setup_test_environment()  # the test client needs it; nothing else changes
    try:
        call_command("migrate", verbosity=0)
        ensure_partitions(days_ahead=1, days_behind=31)  # daily partitions, as a month of production has
        org = OrganizationFactory(slug="bench")
        ObservabilitySettings.objects.create(org=org, body_mode=BodyMode.FULL if args.bodies else BodyMode.METADATA)
        key, _ = make_key(app=AppFactory(org=org, slug="bench-app"))
        user = UserFactory(username="bench-viewer")
        Membership.objects.create(user=user, org=org, role=Role.VIEWER)
        started = time.perf_counter()
        seed(args.records, org_id=org.pk, app_id=key.app_id, key_id=key.pk, bodies=args.bodies)
        print(f"seeded {args.records:,} records in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        client = Client()
        client.force_login(user)
        print(
            f"\n{args.records:,} records for one org ({args.bodies:.0%} with kept bodies), PostgreSQL, "
            f"median / worst of {args.runs} runs\n"
        )
        print("| logs query | median ms | worst ms | target |")
        print("|---|---:|---:|---|")
        for name, url in cases():
            if args.only and args.only not in name:
                continue
            median, worst = timed(client, url, args.runs)
            verdict = "PASS" if median <= TARGET_MS else "MISS"
            print(f"| {name} | {median:.0f} | {worst:.0f} | ≤ {TARGET_MS} ms: {verdict} |", flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", database], check=False)


if __name__ == "__main__":
    main()
