"""Dashboard and logs speed with a million request records for one org, on PostgreSQL.
Seeds a throw-away database with COPY, then times each page in-process and prints a table.
Run from the repo root: `.venv/bin/python bench/dashboard.py [--records 1000000] [--keep]`."""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_MS = 300

MODELS = [
    ("openai", "gpt-4o-mini", 0.15, 0.6),
    ("openai", "gpt-4.1", 2.0, 8.0),
    ("anthropic", "claude-sonnet-4-5", 3.0, 15.0),
    ("anthropic", "claude-haiku-4-5", 1.0, 5.0),
    ("gemini", "gemini-2.5-flash", 0.3, 2.5),
    ("ollama", "llama3.2", 0, 0),
]
CLIENTS = ["claude-code", "openai-python", "aider", "cursor", "anthropic-python"]


def seed(count: int, org_id: int, app_id: int, key_id: int) -> None:
    """COPY `count` records spread over the last 30 days (the newest day busiest), with sessions and users."""
    from django.db import connection

    from observability.models import RequestRecord

    now = datetime.now(UTC)
    columns = [
        "id",
        "org_id",
        "app_id",
        "key_id",
        "created_at",
        "provider",
        "endpoint",
        "model",
        "response_model",
        "status",
        "outcome",
        "error_type",
        "error",
        "stream",
        "passthrough",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "total_tokens",
        "usage_source",
        "cost_input",
        "cost_output",
        "cost_cache",
        "cost_total",
        "price_source",
        "total_ms",
        "ttfb_ms",
        "upstream_ms",
        "overhead_ms",
        "session_id",
        "session_path",
        "session_name",
        "user_id",
        "properties",
        "client",
        "user_agent",
        "request_bytes",
        "response_bytes",
        "cache_hit",
    ]
    rng = random.Random(7)
    batch = 100_000
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor under Django's wrapper
        for start in range(0, count, batch):
            buffer = io.StringIO()
            for _ in range(min(batch, count - start)):
                provider, model, price_in, price_out = rng.choice(MODELS)
                at = now - timedelta(seconds=rng.random() ** 2 * 30 * 86400)
                tokens_in, tokens_out = rng.randint(200, 40_000), rng.randint(10, 2000)
                cost_in, cost_out = tokens_in * price_in / 1e6, tokens_out * price_out / 1e6
                failed = rng.random() < 0.03
                buffer.write(
                    "\t".join(
                        str(v)
                        for v in [
                            uuid.uuid4(),
                            org_id,
                            app_id,
                            key_id,
                            at.isoformat(),
                            provider,
                            "chat.completions",
                            model,
                            model,
                            429 if failed else 200,
                            "upstream_error" if failed else "ok",
                            "",
                            "",
                            "t",
                            "f",
                            tokens_in,
                            tokens_out,
                            0,
                            0,
                            0,
                            tokens_in + tokens_out,
                            "reported",
                            f"{cost_in:.10f}",
                            f"{cost_out:.10f}",
                            "0",
                            f"{cost_in + cost_out:.10f}",
                            "genai-prices",
                            rng.uniform(300, 9000),
                            rng.uniform(100, 900),
                            rng.uniform(100, 900),
                            rng.uniform(0.1, 1.0),
                            f"s-{rng.randint(1, 20_000)}",
                            "",
                            "",
                            f"user-{rng.randint(1, 300)}",
                            "{}",
                            rng.choice(CLIENTS),
                            "bench",
                            2000,
                            800,
                            "f",
                        ]
                    )
                    + "\n"
                )
            with raw.copy(f'COPY "{RequestRecord._meta.db_table}" ({", ".join(columns)}) FROM STDIN') as copy:
                copy.write(buffer.getvalue())
            print(f"  seeded {min(start + batch, count):,}", file=sys.stderr, flush=True)
        cursor.execute(f'ANALYZE "{RequestRecord._meta.db_table}"')


def timed(client, url: str, runs: int) -> tuple[float, float]:
    client.get(url)  # warm the cache of plans and pages
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        reply = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200, (url, reply.status_code)
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database (ingate_bench_dashboard) afterwards")
    args = parser.parse_args()
    database = "ingate_bench_dashboard"
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", database], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], check=True)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("INGATE_DATA_DIR", "/tmp/ingate-bench-dashboard")
    os.environ["DJANGO_SETTINGS_MODULE"] = "ingate.settings"
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment

    from tenancy.models import Membership, Role
    from tenancy.tests.factories import AppFactory, OrganizationFactory, UserFactory, make_key

    setup_test_environment()  # the test client needs it; nothing else changes
    try:
        call_command("migrate", verbosity=0)
        org = OrganizationFactory(slug="bench")
        key, _ = make_key(app=AppFactory(org=org, slug="bench-app"))
        user = UserFactory(username="bench-viewer")
        Membership.objects.create(user=user, org=org, role=Role.VIEWER)
        started = time.perf_counter()
        seed(args.records, org.pk, key.app_id, key.pk)
        print(f"seeded {args.records:,} records in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        started = time.perf_counter()
        from observability import rollups

        rollups.rebuild(org.pk)  # COPY bypassed the writer, which keeps rollups as it inserts
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE observability_recordrollup")  # as autovacuum would, soon after
        print(f"rebuilt rollups in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        client = Client()
        client.force_login(user)
        pages = [
            ("overview, last 24 h", "/ingate/?org=bench"),
            ("overview, last 7 days", "/ingate/?org=bench&window=7d"),
            ("overview, last 30 days", "/ingate/?org=bench&window=30d"),
            ("logs, newest first", "/ingate/logs/?org=bench"),
            ("logs, filtered by model", "/ingate/logs/?org=bench&model=gpt-4.1"),
            ("logs, filtered by user, page 3", "/ingate/logs/?org=bench&user=user-42&page=3"),
            ("sessions", "/ingate/sessions/?org=bench"),
            ("API records list", "/ingate/api/v1/records/?org=bench&limit=50"),
            (
                "API totals, 7 days",
                "/ingate/api/v1/records/totals/?org=bench&since="
                + (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            ),
        ]
        print(f"\n{args.records:,} records for one org, PostgreSQL, median / worst of {args.runs} runs\n")
        print("| page | median ms | worst ms | target |")
        print("|---|---:|---:|---|")
        for name, url in pages:
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
