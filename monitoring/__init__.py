"""Monitoring: outcomes joined back, Evidently drift reports, retraining triggers (later issue)."""
