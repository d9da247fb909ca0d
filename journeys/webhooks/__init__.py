"""Webhook subscriptions, the events they carry, and delivery."""
