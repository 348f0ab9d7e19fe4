"""The avlink command line (Typer + rich): the entry point.

The app, its shared options and its error handling are `app.py`; the commands register on it from
`commands.py` (dub, animate), `model_commands.py` (bench, models, download) and
`train_commands.py` (synth, train, eval), in the order `avlink --help` lists them.

Exit codes: 0 all inputs succeeded, 1 some input (or the model) failed, 2 usage error.
"""

from __future__ import annotations

import os

from avlink_cli import commands, model_commands, train_commands  # noqa: F401 - they register
from avlink_cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point (``avlink``) and ``python -m avlink_cli``.

    Under torchrun each worker ends through `exit_worker` (gloo can abort a worker during the
    interpreter's teardown after all its work is done; see there)."""
    from avlink_cli import shutdown

    shutdown.install()  # SIGTERM unwinds like Ctrl-C and exits 143
    # training.loop.under_torchrun, inline: importing that module imports torch, which a
    # plain `avlink --help` should not wait for
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        try:
            app(prog_name="avlink")
        finally:
            shutdown.check()  # a SIGTERM whose exception Python dropped still exits 143
        return
    try:
        app(prog_name="avlink")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    code = shutdown.EXIT_CODE if shutdown.requested() else code
    from avlink_cli.training.loop import exit_worker

    exit_worker(code)


# The other commands (models, download, synth, train, eval) register themselves on `app`.
