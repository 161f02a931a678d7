"""The response cache: which answers may be kept and under what key (`key.py`), and where they are kept
(`store.py`: Redis, or a bounded in-process LRU). Turning a kept answer into the client's wire format is the
formats' (`proxy/formats/replay.py`)."""

from .key import CACHEABLE_ENDPOINTS, Refusal, cache_key, cacheable, temperature_positive
from .store import MAX_ENTRY_BYTES, CacheUnavailable, Store, purge, redis_key, store_for

__all__ = [
    "CACHEABLE_ENDPOINTS",
    "MAX_ENTRY_BYTES",
    "CacheUnavailable",
    "Refusal",
    "Store",
    "cache_key",
    "cacheable",
    "purge",
    "redis_key",
    "store_for",
    "temperature_positive",
]
