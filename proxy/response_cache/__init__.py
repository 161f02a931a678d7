"""The response cache: which answers may be kept and under what key (`key.py`). Turning a kept answer into the
client's wire format is the formats' (`proxy/formats/replay.py`)."""

from .key import CACHEABLE_ENDPOINTS, Refusal, cache_key, cacheable, temperature_positive

__all__ = ["CACHEABLE_ENDPOINTS", "Refusal", "cache_key", "cacheable", "temperature_positive"]
