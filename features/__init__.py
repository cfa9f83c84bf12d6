"""Feature store: the Feast repository fed from the platform database (issue 3)."""
