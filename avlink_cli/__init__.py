"""avlink: synchronized sound for silent video, and video for sound (AV-Link, arXiv 2412.15191)."""

__version__ = "0.1.0"
