"""avlink: synchronized sound for silent video, and video for sound (AV-Link, arXiv 2412.15191).

The Python API (see `api.py`): ``dub_file`` and ``animate_file`` (file in, file out, as the
CLI), ``Engine`` (the model on a device: one window, tensors in and out; ``longform.dub`` and
``longform.animate`` take any length) and ``AvlinkError``. They are imported on first use, so
that ``import avlink_cli`` (and ``avlink --help``) stays fast.
"""

from typing import Any

from avlink_cli.version import __version__

__all__ = ["AvlinkError", "Engine", "__version__", "animate_file", "dub_file"]


def __getattr__(name: str) -> Any:
    if name in ("dub_file", "animate_file", "AvlinkError"):
        from avlink_cli import api

        return getattr(api, name)
    if name == "Engine":
        from avlink_cli.pipeline import Engine

        return Engine
    raise AttributeError(f"module 'avlink_cli' has no attribute {name!r}")
