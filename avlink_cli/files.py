"""Small file-system helpers shared by every atomic writer, and the claims that make the
leftovers of a killed run recognisable.

A process that is killed (SIGKILL, power loss) runs no cleanup: its temporary outputs and scratch
folders stay. Each one is therefore *claimed* while in use: its creator holds an exclusive
`flock` on it, which the kernel drops when the creator dies, however it dies. A later run removes
what nobody claims any more (`remove_stale_parts`, `scratch_dir`); what another live process is
writing stays claimed and untouched. Where there is no `flock` (Windows) nothing is claimed and
nothing is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PART = ".avlink-part"  # temporary outputs: .<stem>.<random>.avlink-part<suffix>, beside the target
SCRATCH = "avlink-"  # scratch folders in the temp dir: avlink-<random>/, claimed by their LOCK
LOCK = ".lock"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_default_mode(path: str | os.PathLike) -> None:
    """Give a file made by `tempfile.mkstemp` (mode 0600) the mode a plain `open` would give,
    so outputs renamed into place are readable by others as usual (0644 under umask 022)."""
    os.chmod(path, 0o666 & ~_umask())


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive flock without waiting: True, False (someone holds it), None (no flock)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def is_part(path: Path) -> bool:
    """Whether `path` is named like a temporary output (see `claim_part`)."""
    name = path.name
    return name.startswith(".") and (name.endswith(PART) or Path(path.stem).suffix == PART)


def claim_part(target: Path) -> tuple[int, Path]:
    """Create and claim a temporary file for `target`, beside it: (open fd, path).

    The name starts with a dot and ends in `.avlink-part<suffix>`, so that input expansion never
    takes it and a later run can remove it once its writer is gone. Close the fd when done.
    """
    prefix = f".{target.stem[:100]}."
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=PART + target.suffix, dir=target.parent)
        # a cleaner may have taken the unclaimed file between mkstemp and the lock: try again
        if _try_lock(fd) is not False and _same_file(fd, name):
            return fd, Path(name)
        os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def remove_stale_parts(folder: Path) -> list[Path]:
    """Delete the temporary outputs in `folder` that no live process claims; returns them."""
    removed = []
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return removed
    for name in names:
        path = folder / name
        if not is_part(path) or not _unclaimed(path):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


# never follow a link, never block on a FIFO that is named like ours
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def _unclaimed(path: Path) -> bool:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return False
    try:
        # the lock is released when fd closes, after the caller has unlinked the file
        return _try_lock(fd) is True
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A claimed scratch folder `avlink-<random>` in the temp dir, removed on exit; the scratch
    folders of dead processes are removed first."""
    remove_stale_scratch()
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH))
    fd = None
    try:
        # claimed under another name, then renamed: a cleaner only looks at folders whose LOCK
        # exists, and by then it is held
        fresh = folder / (LOCK + "-new")
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        _try_lock(fd)
        os.replace(fresh, folder / LOCK)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if fd is not None:
            os.close(fd)


def remove_stale_scratch() -> list[Path]:
    """Delete the scratch folders in the temp dir that no live process claims; returns them.
    Folders without a LOCK (another program's, or made by an older avlink) are left alone."""
    removed = []
    root = Path(tempfile.gettempdir())
    try:
        names = [e.name for e in os.scandir(root) if e.name.startswith(SCRATCH)]
    except OSError:
        return removed
    for name in names:
        folder = root / name
        try:
            if os.stat(folder, follow_symlinks=False).st_uid != os.getuid():
                continue  # only ever our own
            fd = os.open(folder / LOCK, _OPEN_FLAGS)
        except (OSError, AttributeError):
            continue
        try:
            if _try_lock(fd) is True:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        finally:
            os.close(fd)
    return removed
