"""The response cache on the request path. For an org (or app) with the cache enabled, a cacheable request is
looked up by its key (proxy/response_cache/key.py: the org is always part of it); a hit is answered here, in the
form the client asked for (a stream replayed as the provider streams, or the assembled JSON), and the upstream is
never called; a miss goes on, and its answer, if it completed cleanly with a 2xx, is stored when the request is
over. Entries are stored as the non-streaming answer in the client's wire format, so either form answers the
other and usage is replayed only to clients that ask for it.

Per request: `Cache-Control: no-cache` (skip the lookup, refresh the entry), `no-store`, `max-age=N` (only an
entry at most N seconds old answers); `X-Ingate-Cache: on | off | refresh | read-only`; `Helicone-Cache-Enabled:
true` (= on); `X-Ingate-Cache-Namespace`. Response: `X-Ingate-Cache: HIT | MISS | BYPASS | REFRESH`, `Age` on a
hit. An org without the cache costs one attribute check and one header lookup (X-Ingate-Cache, answered BYPASS)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import orjson

from ..codes import ErrorCode
from ..errors import ProxyError
from ..exchange import Editor
from ..formats import replay
from ..stages import Stage
from .key import cache_key, cacheable, temperature_positive
from .store import redis_key

if TYPE_CHECKING:
    from ..exchange import Exchange

log = logging.getLogger(__name__)

_MODES = {b"on": "on", b"off": "off", b"refresh": "refresh", b"read-only": "read-only"}
_HEADER = b"x-ingate-cache"
_NAMESPACE = b"x-ingate-cache-namespace"
_HELICONE = b"helicone-cache-enabled"
_CACHE_CONTROL = b"cache-control"


class Capture(Editor):
    """Keeps the bytes the client gets (up to a size) so a clean 2xx answer can be stored; passes them on as is."""

    def __init__(self, limit: int):
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.over = False

    def feed(self, chunk: bytes) -> bytes:
        if not self.over:
            self.size += len(chunk)
            if self.size > self.limit:
                self.over, self.parts = True, []
            else:
                self.parts.append(chunk)
        return chunk


class Lookup:
    """One request's cache plan: its entry key, whether to read and to write, and for how long."""

    __slots__ = ("key", "read", "write", "ttl", "max_age", "max_bytes", "refresh", "capture", "source")

    def __init__(self, key: str, read: bool, write: bool, ttl: float, max_age: float | None, max_bytes: int):
        self.key, self.read, self.write, self.ttl, self.max_age, self.max_bytes = (
            key,
            read,
            write,
            ttl,
            max_age,
            max_bytes,
        )
        self.refresh = not read and write
        self.capture: Capture | None = None
        self.source = ""


def _controls(forward: list[tuple[bytes, bytes]]) -> tuple[bool, bytes | None]:
    """(Helicone-Cache-Enabled is true, the Cache-Control value) in one pass over the forwarded headers."""
    helicone, cache_control = False, None
    for name, value in forward:
        if name == _CACHE_CONTROL:
            cache_control = value
        elif name == _HELICONE:
            helicone = value.strip().lower() == b"true"
    return helicone, cache_control


def _cache_control(value: bytes | None) -> tuple[bool, bool, float | None]:
    """(no-cache, no-store, max-age) from the request's Cache-Control."""
    if value is None:
        return False, False, None
    no_cache = no_store = False
    max_age = None
    for part in value.decode("latin-1").lower().split(","):
        name, _, arg = part.strip().partition("=")
        if name == "no-cache":
            no_cache = True
        elif name == "no-store":
            no_store = True
        elif name == "max-age":
            try:
                max_age = float(arg)
            except ValueError:
                raise ProxyError(
                    400,
                    ErrorCode.INVALID_CACHE_HEADER,
                    f"Cache-Control max-age must be a number of seconds, not {arg!r}.",
                ) from None
            if max_age < 0:
                raise ProxyError(400, ErrorCode.INVALID_CACHE_HEADER, "Cache-Control max-age cannot be negative.")
    return no_cache, no_store, max_age


class ResponseCache(Stage):
    """Answers repeated requests from the cache (see the module docstring)."""

    def __init__(self, app):
        super().__init__(app)
        self._tasks: set[asyncio.Task] = set()

    async def request(self, ex: Exchange) -> None:
        config = ex.org.cache
        ingate = ex.incoming.ingate
        asked = ingate.get(_HEADER)
        mode = None
        if asked is not None:
            mode = _MODES.get(asked.strip().lower())
            if mode is None:
                raise ProxyError(
                    400,
                    ErrorCode.INVALID_CACHE_HEADER,
                    f"X-Ingate-Cache must be on, off, refresh or read-only, not {asked.decode('latin-1')!r}.",
                )
        if config is None:
            if mode is not None:
                ex.cache_status = b"BYPASS"  # asked for, but this organization has no cache
            return
        helicone, cache_control = _controls(ex.incoming.forward)
        if mode is None and helicone:
            mode = "on"
        settings = config.for_app(ex.principal.app_id)
        if settings is None or mode == "off":
            if mode is not None:
                ex.cache_status = b"BYPASS"
            return
        parsed = await ex.json()
        endpoint = ex.route.endpoint
        if parsed is None or (settings.endpoints and endpoint not in settings.endpoints):
            ex.cache_status = b"BYPASS"
            return
        ok, _why = cacheable(endpoint, parsed, allow_files=settings.allow_files)
        if not ok or (
            temperature_positive(parsed, endpoint)
            and (
                settings.cache_positive_temperature == "never"
                or (settings.cache_positive_temperature == "when_asked" and not mode)
            )
        ):
            ex.cache_status = b"BYPASS"
            return
        no_cache, no_store, max_age = _cache_control(cache_control)
        namespace = ingate.get(_NAMESPACE, b"").decode("latin-1")[:200]
        if settings.namespace_per_app and ex.principal.app_id is not None:
            # The header narrows within the app's own namespace; it never reaches another app's entries.
            namespace = f"app:{ex.principal.app_id}/{namespace}" if namespace else f"app:{ex.principal.app_id}"
        model = ex.fmt.model(parsed) or ex.route.model
        key = cache_key(ex.principal.org_id, namespace, ex.route.provider, endpoint, model, parsed)
        read = not no_cache and mode != "refresh"
        write = not no_store and mode != "read-only"
        lookup = Lookup(
            redis_key(ex.principal.org_id, namespace, key),
            read,
            write,
            settings.ttl_seconds,
            max_age,
            settings.max_entry_bytes,
        )
        ex.cache = lookup
        if read:
            entry = await self.app.cache_store.get(lookup.key)
            if entry is not None and self._answer(ex, lookup, entry):
                return
        ex.cache_status = b"REFRESH" if lookup.refresh else b"MISS"

    def _answer(self, ex: Exchange, lookup: Lookup, raw: bytes) -> bool:
        """Answer from a stored entry; False when it cannot be used (too old for max-age, unreadable)."""
        try:
            head, _, body = raw.partition(b"\n")
            meta = orjson.loads(head)
            age = max(time.time() - meta["at"], 0.0)
            if lookup.max_age is not None and age > lookup.max_age:
                return False
            parsed = ex.parsed or {}
            streams = ex.fmt.streams(parsed, ex.route.endpoint) or ex.route.endpoint.endswith("streamGenerateContent")
            include_usage = bool(
                isinstance(parsed.get("stream_options"), dict) and parsed["stream_options"].get("include_usage")
            )
            alt_sse = "alt=sse" in ex.query
            answer = replay.answer_from_entry(
                ex.fmt,
                body,
                entry_streamed=False,
                client_streams=streams,
                include_usage=include_usage or ex.fmt.name != "openai",
                alt_sse=alt_sse or not ex.route.endpoint.endswith("streamGenerateContent"),
            )
        except Exception as exc:  # noqa: BLE001  (an unusable entry is a miss, never an error)
            log.warning("Dropped an unusable cache entry: %s", exc)
            return False
        media = replay.media_type(
            ex.fmt, streams, alt_sse=alt_sse or not ex.route.endpoint.endswith("streamGenerateContent")
        )
        record = ex.record
        record.cache_hit = True
        record.cache_source = str(meta.get("source", ""))[:64]
        record.usage = meta.get("usage") or {}
        record.response_model = str(meta.get("model", ""))[:200]
        record.provider = meta.get("provider") or record.provider
        record.stream = streams
        ex.answer = (
            200,
            [
                (b"content-type", media.encode()),
                (b"x-ingate-cache", b"HIT"),
                (b"age", str(int(age)).encode()),
            ],
            answer,
        )
        return True

    def response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> Editor | None:
        status_header = getattr(ex, "cache_status", None)
        if status_header is not None:
            headers.append((b"x-ingate-cache", status_header))
        lookup = ex.cache
        if lookup is None or not lookup.write or not 200 <= status < 300:
            return None
        lookup.capture = Capture(lookup.max_bytes * 4)  # a stream's framing is larger than the answer it carries
        return lookup.capture

    def done(self, ex: Exchange) -> None:
        lookup = ex.cache
        if lookup is None or lookup.capture is None or lookup.capture.over:
            return
        ex.cache = None
        record = ex.record
        if record.outcome != "ok" or not 200 <= record.status < 300 or record.cache_hit:
            return  # never errors, never cut or broken streams
        body = b"".join(lookup.capture.parts)
        try:
            if ex.streamed:
                answer = replay.assemble(ex.fmt, body)
                if "usage" not in answer and record.usage and ex.fmt.name == "openai":
                    answer["usage"] = {k: v for k, v in record.usage.items() if k in _OPENAI_USAGE}
                body = orjson.dumps(answer)
            else:
                orjson.loads(body)  # stored only if it is the JSON answer it should be
        except Exception as exc:  # noqa: BLE001  (not storable: the next request asks the provider again)
            log.debug("Answer of request %s not cached: %s", record.request_id, exc)
            return
        if len(body) > lookup.max_bytes:
            return
        meta = {
            "at": time.time(),
            "source": record.request_id,
            "usage": record.usage,
            "model": record.response_model,
            "provider": record.provider,
        }
        entry = orjson.dumps(meta) + b"\n" + body
        store = self.app.cache_store.put(
            lookup.key, entry, lookup.ttl, max_bytes=lookup.max_bytes + len(entry) - len(body)
        )
        task = asyncio.get_running_loop().create_task(store)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def invalidate(self, kind: str, value: str) -> None:
        pass  # the settings are cached with the org's credentials (proxy/credentials.py)


_OPENAI_USAGE = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
)
