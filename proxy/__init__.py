"""The proxy hot path: provider detection, key swap and streaming relay (see docs/architecture.md)."""
