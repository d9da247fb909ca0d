"""Journeys and their published versions (the catalog)."""
