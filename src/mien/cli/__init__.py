"""The `mien` command line. Run `mien --help`, or `mien COMMAND --help`.

Exit codes: 0 every input succeeded; 1 at least one input failed (the others were processed
and their rows written); 2 bad usage or nothing to do. One module per command group; they share
`mien.cli.common` (the app, consoles, option builder).
"""

# Importing a module registers its commands; `mien --help` lists them in this order.
from mien.cli import images, calibrate, video, batch, serve, evaluate, train, models  # noqa: F401, I001
from mien.cli.common import EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE, app

__all__ = ["EXIT_FAILED_INPUTS", "EXIT_OK", "EXIT_USAGE", "app", "main"]


def main() -> None:  # pragma: no cover - entry point for `python -m mien`
    app()
