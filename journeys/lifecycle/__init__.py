"""Patient data over its life, across every domain that stores it: encrypting what was stored
before JOURNEYS_SECRET_KEY was set (`encrypt`)."""
