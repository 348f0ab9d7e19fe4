"""Small file-system helpers shared by every atomic writer."""

from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_default_mode(path: str | os.PathLike) -> None:
    """Give a file made by `tempfile.mkstemp` (mode 0600) the mode a plain `open` would give,
    so outputs renamed into place are readable by others as usual (0644 under umask 022)."""
    os.chmod(path, 0o666 & ~_umask())
