"""The system's own database: the tables Rekindle writes (segments now; decisions, outcomes and experiments later)."""
