"""``--preview``: a PNG beside each dub or animate output (``clip.dubbed.mp4`` ->
``clip.dubbed.png``), drawn with plots.py on one time axis, so a glance says whether sound and
picture line up.

- dub: the written sound's spectrogram, its onsets (attack times, as ``eval`` finds them) and
  the input video's motion energy and detected contacts;
- animate: a contact sheet (frames of the output at even times across the strip), the input
  sound's waveform and onsets, and the generated video's motion and contacts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import media, metrics, motion, onsets, plots
from .evaluate import _analysis_size

SHEET_FRAMES = 12


def _attacks(path: Path) -> np.ndarray:
    wav = media.read_audio(path, sample_rate=onsets.SAMPLE_RATE).astype(np.float64)
    return metrics.refine_onsets(wav, onsets.onset_detect(wav, delta=0.07) * onsets.HOP)


def _motion(path: Path) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(frames, fps, motion energy per frame, contact times) of a video, at analysis size."""
    info = media.probe(path)
    fps = float(info.fps or 25.0)
    frames = media.read_video(path, fps=fps, size=_analysis_size(info.display_hw))
    flow = motion.block_flow(frames, radius=motion.search_radius(fps))
    return frames, fps, motion.motion_energy(frames), motion.visual_events(frames, fps, flow=flow)


def dub_preview(out: Path, source: Path) -> Path:
    """The PNG of a dub output `out` made from the video `source`."""
    wav = media.read_audio(out, sample_rate=16_000)
    duration = len(wav) / 16_000
    attacks = _attacks(out)
    _, fps, energy, contacts = _motion(source)
    sound = plots.Marks("SOUND ONSETS", attacks, plots.GEN_ONSET, reach=0.3)
    seen = plots.Marks("VISUAL CONTACTS", contacts, plots.CONTACT, dash=5)
    panels = [
        plots.Panel(
            "SPECTROGRAM",
            image=plots.spectrogram(wav, 16_000),
            image_span=duration,
            marks=[sound, seen],
            height=160,
        ),  # fmt: skip
        _motion_panel(energy, fps, [seen, sound]),
    ]
    return _save(out, attacks, contacts, duration, panels)


def animate_preview(out: Path, source: Path) -> Path:
    """The PNG of an animate output `out` made from the sound `source`."""
    frames, fps, energy, contacts = _motion(out)
    duration = len(frames) / fps
    wav = media.read_audio(source, sample_rate=16_000, duration=duration)
    attacks = _attacks(source)
    attacks = attacks[attacks < duration]
    at = ((np.arange(SHEET_FRAMES) + 0.5) * duration / SHEET_FRAMES * fps).astype(int)
    sheet = np.concatenate(list(frames[np.minimum(at, len(frames) - 1)]), axis=1)  # (H, K*W, 3)
    sound = plots.Marks("SOUND ONSETS", attacks, plots.GEN_ONSET)
    seen = plots.Marks("VISUAL CONTACTS", contacts, plots.CONTACT, dash=5, reach=0.5)
    panels = [
        plots.Panel("FRAMES", image=sheet, image_span=duration, marks=[sound], height=100),
        plots.Panel("SOUND", wave=wav, sample_rate=16_000, marks=[sound]),
        _motion_panel(energy, fps, [seen, sound]),
    ]
    return _save(out, attacks, contacts, duration, panels)


def _motion_panel(energy: np.ndarray, fps: float, marks: list) -> plots.Panel:
    return plots.Panel(
        "MOTION", curves=[plots.Curve("MOTION ENERGY", energy, fps, plots.MOTION)], marks=marks
    )


def _save(out: Path, attacks, contacts, duration: float, panels: list) -> Path:
    """Draw the panels into out's PNG, titled with the onset and contact counts."""
    title = f"{out.name}  {len(attacks)} SOUND ONSETS  {len(contacts)} VISUAL CONTACTS"
    return plots.sync_plot(out.with_suffix(".png"), title=title, duration=duration, panels=panels)
