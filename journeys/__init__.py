"""journeys: a self-hostable patient-journey engine, wire-compatible with the MedChat Journeys API."""

__version__ = "0.1.0"
