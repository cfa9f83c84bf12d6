"""The platform database: the source contract (read-only for the system) and its I/O adapter."""
