"""Request records, usage extraction, pricing and the dashboard."""
