"""Journey instances: trigger (bulk and subflows), search, cancel, read."""
