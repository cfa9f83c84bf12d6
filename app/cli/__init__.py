"""The ``rekindle`` command line. Thin: parse, load the configuration, call the layers below, print.

Heavy libraries are imported inside the commands so ``--help`` stays fast. The
group lives in :mod:`app.cli.root`; each module below holds one area's commands,
added here, so no command module imports another's registration.
"""

from __future__ import annotations

from app.cli import data, features, loop, models, pipeline, serving
from app.cli.root import main

for _command in (
    *data.COMMANDS,
    features.features,
    *models.COMMANDS,
    *serving.COMMANDS,
    *loop.COMMANDS,
    pipeline.run_all,
):
    main.add_command(_command)

__all__ = ["main"]
