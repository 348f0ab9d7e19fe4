"""SIGTERM (timeout, systemd, docker stop, batch schedulers) unwinds like Ctrl-C: every `finally`
runs, so temporary outputs and scratch folders go and ffmpeg children are stopped, and the
process exits 128 + 15 = 143.

The handler raises SystemExit(143) wherever the main thread is, but Python drops an exception
raised inside a finaliser or a fork hook ("Exception ignored in ..."). A SIGTERM that comes while
a child is forked would land in such a hook (logging's runs in the parent right after the fork),
so around a fork (`held`) it is only noted, and raised once the child is started. Anywhere else
the request is kept too: `check()` raises it again where work goes on (each input of a batch,
each sampling round, each training step), and `avlink` exits 143 even if its work ran to the
end. A second SIGTERM does nothing, so that it cannot cut the cleanup of the first one short
(SIGKILL still ends everything; ffmpeg children die with the process).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

EXIT_CODE = 128 + signal.SIGTERM
_requested = False
_held = 0


def install() -> None:
    """Handle SIGTERM as above (main thread only: the CLI's entry point calls this)."""
    signal.signal(signal.SIGTERM, _handler)


def _handler(signum: int, frame: object) -> None:
    global _requested
    if not _requested:
        _requested = True
        if not _held:
            raise SystemExit(EXIT_CODE)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Only note a SIGTERM that comes inside the block (a fork); `check()` after it raises."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1


def requested() -> bool:
    """Whether SIGTERM came."""
    return _requested


def check() -> None:
    """Raise SystemExit(143) if SIGTERM came, whether or not its first exception got through."""
    if _requested:
        raise SystemExit(EXIT_CODE)
