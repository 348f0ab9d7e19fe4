"""Shared test fixtures: real media made on the fly with the bundled ffmpeg.

``make_clip(...)`` builds a small clip (video and/or audio, any fps, size, rotation, sample rate
and channel layout, constant or variable frame rate) once per session and returns its path.
``ffmpeg(...)`` runs the bundled binary; ``packet_md5s(path)`` lists per-packet hashes of a
stream without decoding (``-c copy -f framemd5``), to show a stream was copied untouched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# The tests run small tensors on a 2-core machine: one BLAS/OpenMP thread per process is
# faster there (no thread hand-offs) and lets subprocess tests run side by side.
os.environ.setdefault("OMP_NUM_THREADS", "1")

FIXTURES = Path(__file__).parent / "fixtures"
LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "5.1": 6, "7.1": 8}

# Video patterns (lavfi). "index": flat grey whose level encodes the frame number (N * 7 + 16,
# wrapping every 30 frames), so decoded frames can be matched to source frames exactly.
# "halves": top half red, bottom half blue. "bars": red outer twentieths left and right, green
# centre (for crop checks). "testsrc2": ffmpeg's moving test card ("testsrc" for odd sizes).
PATTERNS = {
    "testsrc2": "testsrc2=size={w}x{h}:rate={fps}",
    "testsrc": "testsrc=size={w}x{h}:rate={fps}",  # RGB, so odd sizes stay odd
    "index": "color=c=black:size={w}x{h}:rate={fps},format=yuv420p,"
    "geq=lum='mod(N,30)*7+16':cb=128:cr=128",
    "halves": "color=c=black:size={w}x{h}:rate={fps},format=rgb24,"
    "geq=r='255*lt(Y,H/2)':g=0:b='255*gte(Y,H/2)'",
    "bars": "color=c=black:size={w}x{h}:rate={fps},format=rgb24,"
    "geq=r='255*bitor(lt(X,W/20),gte(X,19*W/20))':g='255*between(X,W/20,19*W/20-1)':b=0",
}


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(*args: str) -> str:
    """Run the bundled ffmpeg quietly; return stdout; fail the test with stderr on error."""
    res = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise AssertionError(f"ffmpeg {' '.join(args)} failed:\n{res.stderr}")
    return res.stdout


def packet_md5s(path: Path, stream: str = "v:0") -> list[tuple[int, int, str]]:
    """(pts, duration, md5) of every packet of one stream, read with -c copy (no decoding)."""
    out = run_ffmpeg("-i", str(path), "-map", f"0:{stream}", "-c", "copy", "-f", "framemd5", "-")
    rows = [ln.split(",") for ln in out.splitlines() if ln and not ln.startswith("#")]
    return [(int(r[2]), int(r[3]), r[5].strip()) for r in rows]


def frame_times(path: Path) -> list[float]:
    """Presentation times (s) of the video packets, sorted: the source frame timeline."""
    out = run_ffmpeg("-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-")
    tb = next(ln for ln in out.splitlines() if ln.startswith("#tb 0:")).split(":")[1].strip()
    num, den = (int(x) for x in tb.split("/"))
    pts = [int(ln.split(",")[2]) for ln in out.splitlines() if ln and ln[0].isdigit()]
    t0 = min(pts)
    return sorted((p - t0) * num / den for p in pts)


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory for generated test media; identical requests return the same cached file.

    make_clip(duration=1.0, fps=25, size=(64, 48), pattern="testsrc2", audio_rate=None,
              layout="mono", freq=440.0, rotate=None, vfr=False, ext=".mp4", lossless=False)

    fps may be a rate string ("24000/1001"); fps=None gives an audio-only file. size is
    (width, height). audio_rate=None gives no audio; layout is "mono", "stereo", "5.1" or "7.1",
    each channel a sine at freq (amplitude 0.5). rotate sets the display matrix (ffmpeg's
    -display_rotation, degrees counter-clockwise) by a stream-copy remux. vfr re-times frames
    irregularly (gaps of 1, 1 and 2 frame periods). lossless uses x264 -qp 0. Odd sizes are
    encoded yuv444p (kept exactly), others yuv420p.
    """
    root = tmp_path_factory.mktemp("clips")
    cache: dict[tuple, Path] = {}

    def make(
        *,
        duration: float = 1.0,
        fps: float | str | None = 25,
        size: tuple[int, int] = (64, 48),
        pattern: str = "testsrc2",
        audio_rate: int | None = None,
        layout: str = "mono",
        freq: float = 440.0,
        rotate: int | None = None,
        vfr: bool = False,
        ext: str = ".mp4",
        lossless: bool = False,
    ) -> Path:
        key = (duration, fps, size, pattern, audio_rate, layout, freq, rotate, vfr, ext, lossless)
        if key in cache:
            return cache[key]
        name = hashlib.md5(repr(key).encode()).hexdigest()[:10]
        out = root / f"{name}{ext}"
        args: list[str] = []
        if fps is not None:
            if pattern == "testsrc2" and (size[0] % 2 or size[1] % 2):
                pattern = "testsrc"  # testsrc2 rounds sizes down to even
            head, _, chain = PATTERNS[pattern].format(w=size[0], h=size[1], fps=fps).partition(",")
            src = f"{head}:duration={duration}" + (f",{chain}" if chain else "")
            args += ["-f", "lavfi", "-i", src]
        if audio_rate is not None:
            n = LAYOUT_CHANNELS[layout]
            exprs = "|".join([f"0.5*sin(2*PI*{freq}*t)"] * n)
            args += ["-f", "lavfi", "-i", f"aevalsrc=exprs='{exprs}':c={layout}:s={audio_rate}"]
            args += ["-t", str(duration)]
        if fps is not None:
            odd = size[0] % 2 or size[1] % 2  # yuv420p cannot hold odd sizes: 4:4:4 then
            pix = "yuv444p" if odd else "yuv420p"
            args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix]
            args += ["-qp", "0"] if lossless else ["-crf", "23"]
            if vfr:  # frame N shown at (N + floor(N / 3)) periods: every third gap is doubled
                args += ["-vf", "setpts='(N+floor(N/3))/(FRAME_RATE*TB)'", "-fps_mode", "vfr"]
            if audio_rate is not None:
                args += ["-c:a", "aac" if ext in (".mp4", ".mov", ".m4a") else "pcm_s16le"]
        elif ext in (".mp4", ".m4a"):
            args += ["-c:a", "aac"]
        target = out if rotate is None else root / f"{name}.norot{ext}"
        run_ffmpeg(*args, str(target))
        if rotate is not None:
            run_ffmpeg(
                "-display_rotation:v:0", str(rotate), "-i", str(target), "-c", "copy", str(out)
            )
        cache[key] = out
        return out

    return make


@pytest.fixture
def fixtures_dir() -> Path:
    """tests/fixtures: real footage (see CREDITS.md there)."""
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-preset model folder with random weights (tiny_model.py): the real model, fast."""
    from tiny_model import make_model_folder

    return make_model_folder(tmp_path_factory.mktemp("model") / "tiny")
