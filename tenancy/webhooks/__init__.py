"""Webhooks: signed (Standard Webhooks), retried, logged events for an org's endpoints. `events` is the
catalogue, `outbox.emit` the one way in, `delivery` the sending, `sources` the hooks the rest of Ingate calls."""
