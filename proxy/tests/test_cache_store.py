"""The response cache's store: Redis and the in-process LRU keep, expire and purge answers the same way, never
across orgs; the in-process one stays within its bytes; a Redis outage is a miss, never an error."""

import asyncio
import gc
import hashlib
import logging
import socket
import time
import tracemalloc
import zlib

import orjson
import pytest
import redis
from django.conf import settings as django_settings

from proxy.response_cache import cache_key, store
from proxy.response_cache.store import MAX_ENTRY_BYTES, MemoryStore, RedisStore, redis_key, store_for

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris. " * 200}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 400, "total_tokens": 409},
    }
)


def run(coro):
    return asyncio.run(coro)


def digest(n: int | str, org: int = 1) -> str:
    body = {"messages": [{"role": "user", "content": f"question {n}"}]}
    return cache_key(org, "", "openai", "chat.completions", "gpt-4o-mini", body)


@pytest.fixture
def redis_url():
    if not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (set in CI)")
    # The configured database, of which only the cache's own keys are dropped: the Redis may be shared.
    url = django_settings.REDIS_URL
    client = redis.Redis.from_url(url)

    def drop_entries():
        for found in client.scan_iter(match=f"{store.PREFIX}*", count=1000):
            client.unlink(found)

    drop_entries()
    yield url
    drop_entries()
    client.close()


@pytest.fixture(params=["memory", "redis"])
def make(request):
    """Stores of either backend (made through `store_for`, as a gateway makes them)."""
    if request.param == "memory":
        return lambda: store_for("", memory_bytes=8 * 1024 * 1024)
    url = request.getfixturevalue("redis_url")
    return lambda: store_for(url, memory_bytes=0)


async def _closed(s, coro):
    try:
        return await coro
    finally:
        if isinstance(s, RedisStore):
            await s.aclose()


def test_a_kept_answer_comes_back_byte_for_byte(make):
    s = make()
    key = redis_key(1, "", digest(1))

    async def go():
        assert await s.get(key) is None
        assert await s.put(key, ANSWER, 60) is True
        return await s.get(key)

    assert run(_closed(s, go())) == ANSWER


def test_an_answer_is_gone_once_its_time_to_live_passes(make):
    s = make()
    key = redis_key(1, "", digest(1))

    async def go():
        await s.put(key, ANSWER, 0.05)
        assert await s.get(key) == ANSWER
        await asyncio.sleep(0.1)
        return await s.get(key)

    assert run(_closed(s, go())) is None


def test_an_answer_over_the_orgs_size_limit_or_the_hard_limit_is_not_kept(make):
    s = make()
    small, large = redis_key(1, "", digest("s")), redis_key(1, "", digest("l"))
    huge = redis_key(1, "", digest("h"))

    async def go():
        assert await s.put(small, ANSWER, 60, max_bytes=len(ANSWER)) is True
        assert await s.put(large, ANSWER, 60, max_bytes=len(ANSWER) - 1) is False
        assert await s.put(huge, b"x" * (MAX_ENTRY_BYTES + 1), 60, max_bytes=10 * MAX_ENTRY_BYTES) is False
        return await s.get(small), await s.get(large), await s.get(huge)

    assert run(_closed(s, go())) == (ANSWER, None, None)


def test_an_answer_holding_a_gateway_key_is_not_kept(make):
    s = make()
    key = redis_key(1, "", digest(1))
    echoed = b'{"content": "your key is sk-ingate-abcdefgh1234"}'

    async def go():
        assert await s.put(key, echoed, 60) is False
        return await s.get(key)

    assert run(_closed(s, go())) is None


def _fill(s, entries):
    async def go():
        for key in entries:
            await s.put(key, ANSWER, 60)

    run(_closed(s, go()))


def _present(s, entries) -> set[str]:
    async def go():
        return {key for key in entries if await s.get(key) is not None}

    return run(_closed(s, go()))


def test_purges_drop_an_org_a_namespace_or_one_entry_and_nothing_of_another_org(make):
    s = make()
    org1_app1 = [redis_key(1, "app:1", digest(i)) for i in range(3)]
    org1_plain = [redis_key(1, "", digest(i)) for i in range(3)]
    org12 = [redis_key(12, "app:1", digest(i, org=12)) for i in range(3)]  # "o12:" must not match "o1"
    org2 = [redis_key(2, "app:1", digest(i, org=2)) for i in range(3)]
    everything = org1_app1 + org1_plain + org12 + org2
    _fill(s, everything)

    # One entry, in its namespace; then in any namespace.
    assert s.purge(1, namespace="app:1", key=digest(0)) == 1
    assert s.purge(1, key=digest(1)) == 2  # in app:1 and in no namespace
    assert _present(s, everything) == set(everything) - {org1_app1[0], org1_app1[1], org1_plain[1]}
    # A namespace.
    assert s.purge(1, namespace="app:1") == 1
    assert _present(s, everything) == {org1_plain[0], org1_plain[2], *org12, *org2}
    # The whole org; then purging another org's id from org 2 leaves org 1 alone.
    assert s.purge(1) == 2
    assert _present(s, everything) == {*org12, *org2}
    assert s.purge(2) == 3
    assert _present(s, everything) == set(org12)


def test_the_module_purge_reaches_the_stores_of_this_process(make, settings):
    settings.REDIS_URL = ""  # only the store under test
    s = make()
    keys = [redis_key(41, "", digest(i, org=41)) for i in range(2)]
    _fill(s, keys)
    assert store.purge(41) == 2
    assert _present(s, keys) == set()


def test_the_value_is_kept_compressed_behind_a_header(redis_url):
    s = store_for(redis_url, memory_bytes=0)
    key = redis_key(1, "", digest(1))
    run(_closed(s, s.put(key, ANSWER, 60)))
    client = redis.Redis.from_url(redis_url)
    raw = client.get(key)
    ttl_ms = client.pttl(key)
    client.close()
    assert raw[:2] == b"\x01z"
    assert zlib.decompress(raw[2:]) == ANSWER
    assert len(raw) < len(ANSWER) / 5
    assert 55_000 < ttl_ms <= 60_000


def test_an_incompressible_answer_is_kept_as_is_and_comes_back():
    s = MemoryStore(1 << 20)
    key = redis_key(1, "", digest(1))
    noise = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(64))  # 2 KiB zlib cannot shrink

    async def go():
        await s.put(key, noise, 60)
        return await s.get(key)

    assert run(go()) == noise
    assert s._entries[key][1][:2] == b"\x01r"


def test_a_small_answer_is_kept_as_is_so_a_hit_need_not_inflate_it():
    s = MemoryStore(1 << 20)
    small, large = redis_key(1, "", digest("s")), redis_key(1, "", digest("l"))
    answer = b'{"choices": [{"message": {"content": "' + b"four " * 100 + b'"}}]}'
    assert len(answer) < store.COMPRESS_FROM

    async def go():
        await s.put(small, answer, 60)
        await s.put(large, answer * 4, 60)
        return await s.get(small), await s.get(large)

    assert run(go()) == (answer, answer * 4)
    assert s._entries[small][1][:2] == b"\x01r" and s._entries[large][1][:2] == b"\x01z"


def test_a_key_needs_the_org_and_a_hex_digest():
    with pytest.raises(TypeError):
        redis_key("1", "", digest(1))
    with pytest.raises(ValueError):
        redis_key(1, "", "*")
    assert redis_key(7, "team-a", digest(1)).startswith("ingate:cache:o7:")


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_redis_is_a_miss_and_a_dropped_put_warned_about_once(caplog):
    s = RedisStore(f"redis://127.0.0.1:{_unused_port()}/3")
    key = redis_key(1, "", digest(1))

    async def go():
        results = []
        for _ in range(3):
            results.append(await s.get(key))
            results.append(await s.put(key, ANSWER, 60))
        await s.aclose()
        return results

    with caplog.at_level(logging.WARNING, logger="proxy.response_cache.store"):
        started = time.monotonic()
        assert run(go()) == [None, False] * 3
    assert time.monotonic() - started < 2.0  # after the first failure no request waits on Redis
    assert len([r for r in caplog.records if "Redis failed" in r.message]) == 1


def test_purging_through_an_unreachable_redis_says_so():
    s = RedisStore(f"redis://127.0.0.1:{_unused_port()}/3")
    with pytest.raises(store.CacheUnavailable):
        s.purge(1)


def test_the_in_process_store_stays_within_its_bytes_with_100k_distinct_answers():
    cap = 4 * 1024 * 1024
    value = orjson.dumps({"choices": [{"message": {"content": "a short answer"}}], "n": 0})

    async def go(s):
        for i in range(100_000):
            await s.put(redis_key(1, "", digest(i)), value.replace(b'"n":0', f'"n":{i}'.encode()), 3600)
            assert s.size <= cap

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        s = MemoryStore(cap)
        run(go(s))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert s.size <= cap
    assert 5_000 < len(s) < 100_000  # it kept what fits, and evicted the rest
    assert grown < cap * 1.1 + 256 * 1024, f"{grown} bytes held for a {cap}-byte cap"


def test_the_least_recently_used_answer_is_evicted_first():
    one = redis_key(1, "", digest(1))
    cost = len(one) + len(store.encode(ANSWER)) + store.ENTRY_OVERHEAD
    s = MemoryStore(cost * 2)
    two, three = redis_key(1, "", digest(2)), redis_key(1, "", digest(3))

    async def go():
        await s.put(one, ANSWER, 60)
        await s.put(two, ANSWER, 60)
        await s.get(one)  # `two` is now the least recently used
        await s.put(three, ANSWER, 60)
        return [await s.get(k) is not None for k in (one, two, three)]

    assert run(go()) == [True, False, True]
