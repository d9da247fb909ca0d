"""Patient data over its life, across every domain that stores it: encrypting what was stored
before JOURNEYS_SECRET_KEY was set (`encrypt`), keeping ended instances only as long as their
retention says (`retention`), and erasing one patient on request (`erasure`)."""
