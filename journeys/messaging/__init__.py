"""Messaging: dispatching queued SMS and email, providers, consent, replies."""
