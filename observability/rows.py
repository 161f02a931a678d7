"""A proxy record turned into a request-record row: tokens normalised, cost priced, request attributed.
Runs in the writer thread, never on the event loop."""

from __future__ import annotations

import dataclasses
import datetime
import json
import operator
import time
from typing import Any

import orjson

from proxy import formats
from proxy.attribution import attribute
from proxy.formats import Tokens
from proxy.invalidation import STORAGE
from proxy.records import ProxyRecord

from .bodies import request_metadata, stored_bodies
from .export.selectors import bodies_only_in_bucket
from .models import PriceOverride, UsageSource
from .pricing import Cost, Override, PriceBook, UnpricedUsage, cost_of
from .sanitise import COUNT_MAX, cost_fits, sanitise_row
from .selectors import body_mode

_OVERRIDE_TTL = 30.0
_RECORD_FIELDS = [f.name for f in dataclasses.fields(ProxyRecord)]
_RECORD_VALUES = operator.attrgetter(*_RECORD_FIELDS)  # every field's value in one C call (a tuple)
_REPORTED = str(UsageSource.REPORTED)


class OrgPolicies:
    """Each org's price overrides, body mode and whether its bodies go only to its bucket, read at most every 30 s
    by the writer (edits show up within that; in the process that made them, at once: `invalidate`)."""

    def __init__(self):
        self._cache: dict[int, tuple[float, dict[str, Override], str, bool]] = {}

    def of(self, org_id: int) -> tuple[dict[str, Override], str]:
        hit = self._cache.get(org_id)
        if hit is not None and time.monotonic() - hit[0] < _OVERRIDE_TTL:
            return hit[1], hit[2]
        return self._load(org_id)[1:3]

    def bodies_in_bucket(self, org_id: int) -> bool:
        hit = self._cache.get(org_id)
        if hit is not None and time.monotonic() - hit[0] < _OVERRIDE_TTL:
            return hit[3]
        return self._load(org_id)[3]

    def invalidate(self, kind: str, value: str) -> None:
        """A proxy.invalidation listener: an org's bucket settings changed (kind "storage"), or anything may have."""
        if kind == STORAGE and value.isdigit():
            self._cache.pop(int(value), None)
        elif kind == "all":
            self._cache.clear()

    def _load(self, org_id: int) -> tuple[float, dict[str, Override], str, bool]:
        overrides = {
            row.model: Override(
                row.input_per_mtok,
                row.output_per_mtok,
                row.cache_read_per_mtok,
                row.cache_write_per_mtok,
                row.cache_write_1h_per_mtok,
            )
            for row in PriceOverride.objects.filter(org_id=org_id)
        }
        mode = body_mode(org_id)
        found = self._cache[org_id] = (time.monotonic(), overrides, mode, bodies_only_in_bucket(org_id))
        return found


def slim(record: ProxyRecord) -> bytes:
    """A record as a Redis stream entry: everything but the request body, of which only what attribution and
    the body metadata need (a coding agent's body can be megabytes; this is a few hundred bytes)."""
    body = record.body if isinstance(record.body, dict) else {}
    fmt = formats.of_provider(record.provider, record.endpoint)
    facts: dict[str, Any] = {"__shape__": request_metadata(record.body, record.request_bytes, fmt)}
    if isinstance(body.get("user"), str):
        facts["user"] = body["user"]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and "user_id" in metadata:
        facts["metadata"] = {"user_id": metadata["user_id"]}
    data = dict(zip(_RECORD_FIELDS, _RECORD_VALUES(record), strict=True))
    data["body"] = facts
    data["request_body"] = (record.request_body or b"").decode("utf-8", errors="replace")
    data["response_body"] = (record.response_body or b"").decode("utf-8", errors="replace")
    try:
        return orjson.dumps(data)
    except TypeError:
        # orjson refuses integers beyond 64 bits and lone surrogates, which a client or provider can send; the
        # standard library takes both (the writer's sanitising then deals with them), so the record still travels.
        return json.dumps(data, default=str).encode("utf-8", "surrogatepass")


def unslim(raw: bytes) -> ProxyRecord:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = json.loads(raw.decode("utf-8", "surrogatepass"))  # what slim's fallback wrote
    data["request_body"] = data["request_body"].encode()
    data["response_body"] = data["response_body"].encode()
    return ProxyRecord(**data)


def price_record(
    record: ProxyRecord,
    tokens: Tokens,
    overrides: dict[str, Override],
    models: list[str] | None = None,
    prices: PriceBook | None = None,
) -> tuple[Cost | None, str]:
    """What a record's tokens cost (priced by the model that answered, else the one requested, or `models`),
    or None and why not when its usage could not be priced ("" when the model simply has no price). `prices`:
    the batch's price lookups, kept from record to record."""
    if max(tokens.input, tokens.output, tokens.total) > COUNT_MAX:
        return None, "the provider reported more tokens than a record holds"
    models = models if models is not None else [record.response_model, record.model]
    try:
        if prices is not None:
            cost = prices.cost(
                tokens, org_id=record.org_id, provider=record.provider, models=models, overrides=overrides
            )
        else:
            cost = cost_of(tokens, provider=record.provider, models=models, overrides=overrides)
    except UnpricedUsage as exc:
        return None, str(exc)
    if cost is not None and not cost_fits(cost.total):
        return None, f"the cost ({cost.total}) is beyond what a record holds"
    return cost, ""


def record_cost(record: ProxyRecord, tokens: Tokens, overrides: dict[str, Override]) -> Cost | None:
    """What a record's tokens cost, or None (unknown model, or usage that cannot be priced)."""
    return price_record(record, tokens, overrides)[0]


def build_row(
    record: ProxyRecord, overrides: dict[str, Override], mode: str = "metadata", prices: PriceBook | None = None
) -> dict[str, Any]:
    """The RequestRecord field values for one proxied request (plain data), with its stored bodies under "body"
    when the org's body mode keeps any. Sanitised: always storable, changes noted in "flags". `prices`: the
    batch's price lookups (store_records passes one for all its records)."""
    tokens = formats.tokens(record.provider, record.usage)
    who = attribute(record.request_headers, record.body)
    row: dict[str, Any] = {
        "id": record.request_id,
        "org_id": record.org_id,
        "team_id": record.team_id,
        "app_id": record.app_id,
        "key_id": record.key_id,
        "created_at": datetime.datetime.fromtimestamp(record.started_at, datetime.UTC).isoformat(),
        "provider": record.provider[:64],
        "endpoint": record.endpoint[:64],
        "model": record.model[:200],
        "response_model": record.response_model[:200],
        "status": record.status,
        "outcome": record.outcome,
        "error_type": record.error_type[:64],
        "error": record.error[:2000],
        "stream": record.stream,
        "passthrough": record.passthrough,
        "total_ms": round(record.total_ms, 3),
        "ttfb_ms": None if record.ttfb_ms is None else round(record.ttfb_ms, 3),
        "upstream_ms": round(record.upstream_ms, 3),
        "overhead_ms": round(record.overhead_ms, 3),
        "session_id": who.session_id,
        "session_path": who.session_path,
        "session_name": who.session_name,
        "user_id": who.user_id,
        "properties": who.properties,
        "client": who.client,
        "user_agent": record.request_headers.get("user-agent", "")[:300],
        "request_bytes": record.request_bytes,
        "response_bytes": record.response_bytes,
        "prompt_version_id": record.prompt_version_id,
        "route": record.route,
        "attempts": record.attempts,
        "cache_hit": record.cache_hit,
        "cache_source": record.cache_source,
        "guardrail": record.guardrail,
        "guardrail_decisions": record.guardrail_decisions,
        "flags": [],
    }
    shape = record.body.get("__shape__") if isinstance(record.body, dict) else None
    bodies = stored_bodies(
        mode,
        fmt=formats.of_provider(record.provider, record.endpoint),
        parsed=record.body,
        request=record.request_body or b"",
        response=record.response_body or b"",
        request_size=record.request_bytes,
        streamed=record.stream,
        truncated=record.bodies_truncated,
        shape=shape,
    )
    if bodies is not None:
        row["body"] = {"record_id": record.request_id, "created_at": row["created_at"], **bodies}
    if tokens is not None:
        row["input_tokens"] = tokens.input
        row["output_tokens"] = tokens.output
        row["cache_read_tokens"] = tokens.cache_read
        row["cache_write_tokens"] = tokens.cache_write
        row["cache_write_1h_tokens"] = tokens.cache_write_1h
        row["reasoning_tokens"] = tokens.reasoning
        row["total_tokens"] = tokens.input + tokens.output
        row["usage_source"] = _REPORTED
        row["service_tier"] = tokens.tier
        row["tool_calls"] = dict(tokens.tools) if tokens.tools else {}
    sanitise_row(row)  # before pricing: "gpt-4o-mini\x00" is priced as the gpt-4o-mini it was meant to be
    if tokens is not None:
        cost, unpriced = price_record(record, tokens, overrides, [row["response_model"], row["model"]], prices)
        if unpriced:
            row["flags"].append(f"unpriced: {unpriced}"[:300])
        if cost is not None:
            row["cost_input"] = str(cost.input)
            row["cost_output"] = str(cost.output)
            row["cost_cache"] = str(cost.cache)
            row["cost_tools"] = str(cost.tools)
            row["cost_total"] = str(cost.input + cost.output + cost.cache + cost.tools)
            row["price_source"] = cost.source
            if record.cache_hit:  # answered from the cache: nothing billed, the original's cost saved
                row["cost_saved"] = row["cost_total"]
                for name in ("cost_input", "cost_output", "cost_cache", "cost_tools", "cost_total"):
                    row[name] = "0"
    return row
