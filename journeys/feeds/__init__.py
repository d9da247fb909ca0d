"""Feeds from the clinic's systems: HL7 v2 SIU over MLLP (journeys.feeds.listener), mapped to
journeys by a feed's mapping file (journeys.feeds.mapping) and applied by journeys.feeds.apply."""
