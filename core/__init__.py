"""The base of every layer: configuration, errors, time helpers."""
