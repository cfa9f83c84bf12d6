"""The application layer: the `rekindle` command line, its pipelines and console reports. Nothing imports it."""
