"""Media files in and out, through the ffmpeg binary that imageio-ffmpeg ships (no ffprobe).

Time convention: t = 0 is the start of the file's timeline (ffmpeg's, after its start offset).
A decoded video at ``fps`` holds frame k = the picture on screen at ``start + k / fps``; a decoded
waveform holds sample n at ``start + n / sample_rate``. Frames are (T, H, W, 3) uint8 RGB, audio
is (S,) float32 mono in [-1, 1].

Resize rule: the displayed picture (rotation and pixel aspect applied) is scaled so that it
covers the target size with its aspect kept, i.e. the short side (relative to the target) fits,
then centre-cropped. Every write goes to a hidden temporary file beside the target and is moved
into place only when complete; an existing file is never replaced unless ``overwrite=True``.

This package is the only place that touches media files and runs ffmpeg: ``ffmpeg`` (the binary,
the process runner, the errors), ``info`` (MediaInfo, probe), ``decode`` and ``encode`` (writes
and muxes), ``sound`` (the sound dub and animate write: loudness, peaks, rates, soundtracks).
"""

from .decode import iter_video, read_audio, read_video
from .encode import (
    AUDIO_SUFFIXES,
    VIDEO_SUFFIXES,
    atomic_output,
    write_audio,
    write_video,
)
from .ffmpeg import MediaError, OutputExistsError, ffmpeg_exe
from .info import MediaInfo, probe
from .sound import (
    CEILING_DBTP,
    TARGET_LUFS,
    VIDEO_RATE,
    Written,
    mux_audio,
    mux_input_audio,
    write_dub,
)

__all__ = [
    "AUDIO_SUFFIXES",
    "CEILING_DBTP",
    "TARGET_LUFS",
    "VIDEO_RATE",
    "VIDEO_SUFFIXES",
    "MediaError",
    "MediaInfo",
    "OutputExistsError",
    "atomic_output",
    "ffmpeg_exe",
    "iter_video",
    "Written",
    "mux_audio",
    "mux_input_audio",
    "probe",
    "read_audio",
    "read_video",
    "write_audio",
    "write_dub",
    "write_video",
]
