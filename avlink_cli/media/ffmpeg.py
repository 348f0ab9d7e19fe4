"""The ffmpeg binary that imageio-ffmpeg ships, how it is run, and the errors media raises.

Every ffmpeg failure becomes a one-line MediaError naming the file and quoting ffmpeg's most
specific complaint. Every file name reaches ffmpeg through `file_arg` (absolute, behind the
`file:` protocol), and every ffmpeg dies with the process that started it (`spawn`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from avlink_cli import shutdown


class MediaError(Exception):
    """A media file could not be read or written. The message is one line naming the file."""


class OutputExistsError(MediaError):
    """The output file exists and overwrite was not asked for."""


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def file_arg(path: str | os.PathLike) -> str:
    """A file name as ffmpeg must be given it: absolute, behind the `file:` protocol.

    ffmpeg reads `concat:a.mp4|b.mp4`, `pipe:`, `http://...` and a leading `-` as protocols or
    options, so a bare name that someone else chose could make it read other files than the one
    named. With `file:` and an absolute path, the rest of the name is only a path.
    """
    return "file:" + os.path.abspath(path)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when this process dies (Linux), so an
    ffmpeg never outlives a killed avlink: it would go on writing, or finish a half output."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: nobody would be told
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def spawn(cmd: list[str], **popen) -> subprocess.Popen:
    """Start an ffmpeg child that dies with this process (see _die_with_parent). A SIGTERM that
    comes during the fork is raised once the child is started, and the child is then killed."""
    preexec = _die_with_parent()
    proc = None
    try:
        with shutdown.held():
            proc = subprocess.Popen(
                cmd, **({} if preexec is None else {"preexec_fn": preexec}), **popen
            )
        shutdown.check()
    except BaseException:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    return proc


def run_captured(cmd: list[str]) -> tuple[int, bytes, bytes]:
    """Run an ffmpeg command to its end: (exit code, stdout, stderr)."""
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, out, err


_GENERIC = ("Error opening", "Error parsing", "Failed to set value", "To ignore this", "Conversion")


def last_line(stderr: str) -> str:
    """ffmpeg's most specific complaint: the last line that is not a generic epilogue."""
    # Lines look like "[component @ 0x...] message": keep the message only.
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", ln.strip()) for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    specific = [ln for ln in lines if not ln.startswith(_GENERIC)]
    return (specific or lines or ["ffmpeg failed"])[-1]


@contextlib.contextmanager
def ffmpeg_process(args: list[str], path: Path, what: str, **popen) -> Iterator[subprocess.Popen]:
    """Run ffmpeg around the block; kill it if the block fails (or a generator is closed).

    A non-zero exit raises MediaError("<path>: <what> (<ffmpeg's complaint>)"). stderr goes to
    a temporary file, so pipes on stdin/stdout can never deadlock against it.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", *args]
    with tempfile.TemporaryFile() as err:
        proc = spawn(cmd, stderr=err, **popen)
        try:
            yield proc
        except BaseException:
            proc.kill()
            raise
        finally:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            rc = proc.wait()
        if rc != 0:
            err.seek(0)
            raise MediaError(f"{path}: {what} ({last_line(err.read().decode(errors='replace'))})")


def run_ffmpeg(args: list[str], path: Path, what: str) -> bytes:
    """Run ffmpeg to completion and return its stdout."""
    with ffmpeg_process(args, path, what, stdout=subprocess.PIPE) as proc:
        return proc.stdout.read()


def faststart(path: Path) -> list[str]:
    """Output flags that put an .mp4/.mov index first, so players can start before the end."""
    return ["-movflags", "+faststart"] if path.suffix.lower() in (".mp4", ".mov") else []
