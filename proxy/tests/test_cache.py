"""The proxy's loading cache: one load per key however many wait, and safe when two event loops (the
server's, and an eval run's in another thread) ask for the same key at the same time."""

import asyncio
import threading

from proxy.cache import LoadingCache


def test_concurrent_misses_share_one_load():
    loads = []

    async def load(key):
        loads.append(key)
        await asyncio.sleep(0.05)
        return key.upper()

    async def main():
        cache = LoadingCache(load, ttl=60, miss_ttl=5)
        return await asyncio.gather(*(cache.get("org") for _ in range(20)))

    assert asyncio.run(main()) == ["ORG"] * 20 and loads == ["org"]


def test_two_event_loops_in_two_threads_both_get_the_value_while_a_load_is_in_flight():
    started, results, errors = threading.Event(), [], []

    async def load(key):
        started.set()
        await asyncio.sleep(0.2)  # long enough for the other loop to ask meanwhile
        return key.upper()

    cache = LoadingCache(load, ttl=60, miss_ttl=5)

    def ask():
        try:
            results.append(asyncio.run(cache.get("org")))
        except Exception as exc:  # noqa: BLE001  (the assertion below shows it)
            errors.append(exc)

    first = threading.Thread(target=ask)
    first.start()
    started.wait(2)
    second = threading.Thread(target=ask)
    second.start()
    first.join(5)
    second.join(5)
    assert errors == [] and results == ["ORG", "ORG"]
    assert asyncio.run(cache.get("org")) == "ORG"  # cached: no load needed, on a third loop
