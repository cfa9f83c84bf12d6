"""Serving: BentoML online service and batch scoring of the registered models (later issue)."""
