"""Accounts: orgs and API tokens."""
