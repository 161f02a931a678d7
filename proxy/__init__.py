"""The proxy hot path: provider detection, key swap and streaming relay (see DESIGN.md)."""
