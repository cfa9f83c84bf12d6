"""``python -m app.cli``: the same as the ``rekindle`` command."""

from app.cli import main

main()
