"""``avlink eval``: score a folder of generated clips for audio-video sync.

Generated files (video with audio, or audio alone) are paired by file stem with references
and/or ground-truth sidecars. A stem matches the longest reference/sidecar stem that equals it
or that it starts with followed by one of ``. _ -`` (``clip7.dubbed.mp4`` -> ``clip7.mp4``,
``clip7.json``). Sidecars are JSON ``{"events": [{"time": seconds, "kind": ...}, ...]}``; without
a sidecar folder they are looked for beside the references, then beside the generated files.

Per clip, where the inputs allow it (mode "v2a" keeps the audio metrics, "a2v" the video ones,
"auto" all of them):

- onset_acc, onset_ap: CondFoleyGen's metrics of the generated audio against the reference
  audio, both decoded at 22050 Hz mono and cut to the shorter of the two (v2a);
- timing_*: attack times of the generated audio's onsets against the sidecar events (v2a);
- visual_timing_*: visual contact events of the generated video against the sidecar events,
  match_share: share of audio events (sidecar events, else the audio's onsets) with a visual
  event within +-1 frame, and match_chance: the share random times would get (a2v);
- av_align: TempoTokens' AV-Align of the file's own audio and video (both modes);
- audio_features, audio_features_true: `realism.audio_features` of the generated and the
  reference soundtracks, cut to the shorter (v2a, with references);
- with a reference video (a2v, auto): match_share_true, the same detector and events on the
  reference (the true render: the detector's ceiling), and `realism.clip_stats` of both videos
  at the reference's size.

The summary gives the audio Fréchet distance of the generated soundtracks to the references'
(`realism.audio_fd`: audio_fd, audio_fd_half at the floor's set sizes, audio_fd_floor between
two halves of the references), averages per-clip accuracy, AP, match share and AV-Align over
clips (nan entries left out, as their counts say) and pools timing errors over all events of all clips. For A2V
with references it sets the generated videos against the true renders (`realism`: frame
change, detail, Fréchet distance) and gives the sync score three ways: match_share on the
generated videos, match_share_true on the true renders and match_chance, with
sync_normalised = (share - chance) / (ceiling - chance). When the generated videos fail the
realism check (frame change or detail beyond 1.5x of the renders'), sync_valid is false: the
detector then fires on noise, and match_share is not a sync score. With
sidecars it also gives onsets_per_event, generated onsets over true events: timing errors take
each event's nearest onset, so audio with many more onsets than events (a ratio well above 1)
gets small errors by chance, and its timing figures mean little.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import media, metrics, motion, onsets, plots, realism

log = logging.getLogger(__name__)

Mode = Literal["v2a", "a2v", "auto"]
SR = onsets.SAMPLE_RATE
MAX_ANALYSIS_SIDE = 128  # videos are decoded at most this large (the flow works at <= 128)


def media_files(folder: Path) -> dict[str, Path]:
    """Audio and video files directly in folder, by stem (name without the last suffix)."""
    suffixes = (*media.VIDEO_SUFFIXES, *media.AUDIO_SUFFIXES)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    by_stem: dict[str, Path] = {}
    for p in files:  # a video wins over an audio file with the same stem
        if p.stem not in by_stem or p.suffix.lower() in media.VIDEO_SUFFIXES:
            by_stem[p.stem] = p
    return by_stem


def match_stem(stem: str, keys: list[str] | dict[str, Any]) -> str | None:
    """The longest key equal to stem or a prefix of it followed by '.', '_' or '-'."""
    found = [k for k in keys if stem == k or any(stem.startswith(k + sep) for sep in "._-")]
    return max(found, key=len) if found else None


def load_events(path: Path) -> np.ndarray:
    """Sorted event times in seconds from a sidecar JSON."""
    data = json.loads(path.read_text())
    return np.sort(np.array([float(e["time"]) for e in data.get("events", [])]))


def _sidecars(folders: list[Path]) -> dict[str, Path]:
    for folder in folders:
        found = {p.stem: p for p in sorted(folder.glob("*.json"))}
        if found:
            return found
    return {}


def _timing(prefix: str, stats: metrics.TimingStats) -> dict[str, Any]:
    errors = [None if np.isnan(e) else 1000 * e for e in stats.errors]
    return {
        f"{prefix}_median_ms": 1000 * stats.median_abs,
        f"{prefix}_p90_ms": 1000 * stats.p90_abs,
        f"{prefix}_bias_ms": 1000 * stats.bias,
        f"{prefix}_bt1359_share": stats.bt1359_share,
        f"{prefix}_missed": stats.n_missed,
        f"{prefix}_events": stats.n_events,
        f"{prefix}_errors_ms": errors,
    }


def score_clip(
    generated: Path,
    *,
    reference: Path | None = None,
    events: np.ndarray | None = None,
    mode: Mode = "auto",
    plot_path: Path | None = None,
) -> dict[str, Any]:
    """All applicable metrics of one generated file, as a flat dict (see the module notes).

    Timing errors are in milliseconds, shares in [0, 1]; the lists ``*_times`` are seconds.
    """
    info = media.probe(generated)
    rec: dict[str, Any] = {"name": generated.stem, "generated": str(generated)}
    wav = media.read_audio(generated, sample_rate=SR).astype(np.float64) if info.has_audio else None
    frames, fps, flow, ref_wav = None, float(info.fps or 25.0), None, None
    if info.has_video and (mode != "v2a" or wav is not None):
        frames = media.read_video(generated, fps=fps, size=_analysis_size(info.display_hw))
    duration = len(wav) / SR if wav is not None else info.duration
    if events is not None:
        events = events[events < duration]  # events past the end cannot be matched
        rec["event_times"] = events.tolist()
    peaks = np.zeros(0, np.int64)
    if wav is not None:
        # Timing and A2V matching use librosa's default delta 0.07 (TempoTokens' detector too):
        # CondFoleyGen's 0.3 misses soft hits, which would then count as sync errors.
        peaks = onsets.onset_detect(wav, delta=0.07) * onsets.HOP
        attacks = metrics.refine_onsets(wav, peaks)
        rec["onset_times"] = attacks.tolist()
        if reference is not None and mode != "a2v":
            ref_wav = media.read_audio(reference, sample_rate=SR).astype(np.float64)
            rec["reference"] = str(reference)
            rec |= _condfoleygen(wav, ref_wav)
            n = min(len(wav), len(ref_wav))
            rec["audio_features"] = _rounded(realism.audio_features(wav[:n], SR))
            rec["audio_features_true"] = _rounded(realism.audio_features(ref_wav[:n], SR))
        if events is not None and mode != "a2v":
            rec |= _timing("timing", metrics.timing_errors(events, attacks))
    if frames is not None:
        flow = motion.block_flow(frames, radius=motion.search_radius(fps))
        vis = motion.visual_events(frames, fps, flow=flow)
        rec |= {"fps": fps, "visual_times": vis.tolist()}
        if mode != "v2a":
            audio_events = events if events is not None else np.asarray(rec.get("onset_times", []))
            rec["match_share"] = metrics.match_share(audio_events, vis, fps=fps)
            rec["match_chance"] = metrics.match_chance(vis, fps=fps, duration=duration)
            if events is not None:
                rec |= _timing("visual_timing", metrics.timing_errors(events, vis))
            if reference is not None:
                rec |= _against_true_video(generated, reference, audio_events, fps)
        if wav is not None:
            video_peaks = metrics.local_maxima_times(motion.flow_magnitude(flow), fps)
            rec["av_align"] = metrics.av_align(peaks / SR, video_peaks, fps=fps)
    if plot_path is not None:
        _plot(plot_path, rec, wav=wav, ref_wav=ref_wav, frames=frames, flow=flow, duration=duration)
        rec["plot"] = str(plot_path)
    return rec


def _against_true_video(
    generated: Path, reference: Path, audio_events: np.ndarray, fps: float
) -> dict[str, Any]:
    """A2V against the reference's true video: the detector's share on it (its ceiling) and
    both videos' realism figures at the reference's own size and fps."""
    ref = media.probe(reference)
    if not ref.has_video:
        return {}
    ref_fps = float(ref.fps or fps)
    hw = ref.display_hw
    true = media.read_video(reference, fps=ref_fps, size=_analysis_size(hw))
    vis_true = motion.visual_events(true, ref_fps)
    gen = media.read_video(generated, fps=ref_fps, size=hw)
    true_native = (
        true if _analysis_size(hw) == hw else media.read_video(reference, fps=ref_fps, size=hw)
    )
    return {
        "reference": str(reference),
        "match_share_true": metrics.match_share(audio_events, vis_true, fps=ref_fps),
        "realism": realism.clip_stats(gen),
        "realism_true": realism.clip_stats(true_native),
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in values]


def _condfoleygen(wav: np.ndarray, ref_wav: np.ndarray) -> dict[str, Any]:
    """Onset acc / AP of generated vs reference audio (22050 Hz), both cut to the shorter."""
    n = min(len(wav), len(ref_wav))
    ref_onsets = onsets.detect_onsets(ref_wav[:n], SR)
    gen_onsets = onsets.detect_onsets(wav[:n], SR)
    s = metrics.onset_acc_ap(ref_onsets, gen_onsets, wav[:n])
    return {
        "onset_acc": s.acc,
        "onset_ap": s.ap,
        "hits": s.hits,
        "n_ref_onsets": s.n_ref,
        "n_gen_onsets": s.n_gen,
        "ref_onset_times": (ref_onsets / SR).tolist(),
        "gen_onset_times": (gen_onsets / SR).tolist(),
    }


def _analysis_size(hw: tuple[int, int]) -> tuple[int, int]:
    h, w = hw
    scale = min(1.0, MAX_ANALYSIS_SIDE / max(h, w))
    return max(2, int(round(h * scale / 2)) * 2), max(2, int(round(w * scale / 2)) * 2)


def _plot(
    path: Path,
    rec: dict[str, Any],
    *,
    wav: np.ndarray | None,
    ref_wav: np.ndarray | None,
    frames: np.ndarray | None,
    flow: np.ndarray | None,
    duration: float,
) -> None:
    def marks(label: str, key: str, color: plots.RGB, **kw: Any) -> plots.Marks:
        return plots.Marks(label, np.asarray(rec.get(key, [])), color, **kw)

    truth = marks("TRUE EVENTS", "event_times", plots.TRUE_EVENT, dash=5)
    attacks = marks("ATTACKS", "onset_times", plots.ATTACK, reach=0.3)
    panels = []
    if wav is not None:
        cfg = marks("ONSETS (CFG)", "gen_onset_times", plots.GEN_ONSET)
        label = "GENERATED" if "reference" in rec or "visual_times" not in rec else "AUDIO"
        panels.append(plots.Panel(label, wav, SR, marks=[cfg, attacks, truth]))
        spec = plots.spectrogram(wav, SR, n_fft=1024)
        panels.append(plots.Panel("SPECTROGRAM", image=spec, image_span=len(wav) / SR,
                                  marks=[attacks, truth]))  # fmt: skip
    if ref_wav is not None:
        ref = marks("REF ONSETS", "ref_onset_times", plots.REF_ONSET)
        panels.append(plots.Panel("REFERENCE", ref_wav, SR, marks=[ref, truth]))
    if frames is not None and flow is not None:
        fps = rec["fps"]
        curves = [plots.Curve("MOTION ENERGY", motion.motion_energy(frames), fps, plots.MOTION)]
        curves.append(plots.Curve("CONTACTS", motion.contact_strength(flow), fps, plots.CONTACT))
        vis = marks("CONTACTS", "visual_times", plots.CONTACT)
        panels.append(plots.Panel("MOTION", curves=curves, marks=[vis, truth]))
    parts = [rec["name"]]
    for key, label in (("onset_acc", "ACC"), ("onset_ap", "AP"), ("av_align", "AV-ALIGN")):
        if key in rec:
            parts.append(f"{label} {rec[key]:.2f}")
    if "timing_median_ms" in rec:
        parts.append(f"MEDIAN ERR {rec['timing_median_ms']:.0f} MS")
    if "match_share" in rec:
        parts.append(f"MATCH {rec['match_share']:.2f}")
    plots.sync_plot(path, title="  ".join(parts), duration=duration, panels=panels)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over clips of per-clip scores and pooled timing statistics (module notes)."""
    out: dict[str, Any] = {"n_clips": len(records)}
    for key in ("onset_acc", "onset_ap", "match_share", "match_chance", "av_align"):
        vals = np.array([r[key] for r in records if key in r], dtype=np.float64)
        ok = vals[~np.isnan(vals)]
        if len(vals):
            out[key] = float(ok.mean()) if len(ok) else float("nan")
            out[f"{key}_clips"] = len(ok)
    with_events = [r for r in records if "onset_times" in r and "timing_errors_ms" in r]
    n_events = sum(len(r["event_times"]) for r in with_events)
    if n_events:
        out["onsets_per_event"] = sum(len(r["onset_times"]) for r in with_events) / n_events
    heard = [r for r in records if "audio_features" in r]
    out |= realism.audio_fd(
        [r["audio_features"] for r in heard], [r["audio_features_true"] for r in heard]
    )
    out |= _a2v_summary(records)
    for prefix in ("timing", "visual_timing"):
        lists = [r[f"{prefix}_errors_ms"] for r in records if f"{prefix}_errors_ms" in r]
        if lists:
            ms = np.array([np.nan if e is None else e for e in sum(lists, [])], dtype=np.float64)
            pooled = _timing(prefix, metrics.timing_stats(ms / 1000))
            out |= {k: v for k, v in pooled.items() if not k.endswith("_errors_ms")}
    return out


def _a2v_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Realism of the generated videos against the true renders, and the sync score three
    ways (module notes); empty without reference videos."""
    scored = [r for r in records if "realism" in r and "match_share" in r]
    if not scored:
        return {}
    rep = realism.compare_stats([r["realism"] for r in scored], [r["realism_true"] for r in scored])
    keys = ("match_share", "match_share_true", "match_chance")
    timed = np.array([[r[k] for k in keys] for r in scored], dtype=np.float64)
    timed = timed[~np.isnan(timed).any(1)]  # clips with events to match (not silent ones)
    share, ceiling, chance = timed.mean(0) if len(timed) else (float("nan"),) * 3
    ok = realism.passes(rep)
    out: dict[str, Any] = {f"realism_{k}": v for k, v in rep.items()}
    out |= {
        "realism_pass": ok,
        "sync_clips": len(timed),
        "sync_share": float(share),
        "match_share_true": float(ceiling),
        "match_chance_timed": float(chance),
        "sync_normalised": float((share - chance) / (ceiling - chance))
        if ceiling > chance
        else None,
        "sync_valid": ok,
    }
    if not ok:
        out["sync_note"] = (
            "the generated videos fail the realism check (frame change or detail beyond 1.5x "
            "of the true renders'): match_share is not a sync score"
        )
    return out


def run_eval(
    generated: Path,
    *,
    reference: Path | None = None,
    sidecars: Path | None = None,
    plot_dir: Path | None = None,
    mode: Mode = "auto",
) -> dict[str, Any]:
    """Score every generated file in a folder; returns ``{"mode", "clips": [...], "summary"}``.

    Raises ValueError when nothing can be scored (no files, or v2a with neither references nor
    sidecars found).
    """
    if mode not in ("v2a", "a2v", "auto"):
        raise ValueError(f"mode must be v2a, a2v or auto, not {mode!r}")
    gen = media_files(Path(generated))
    if not gen:
        raise ValueError(f"{generated}: no audio or video files")
    refs = media_files(Path(reference)) if reference is not None else {}
    side_dirs = [Path(sidecars)] if sidecars else [Path(p) for p in (reference, generated) if p]
    side = _sidecars(side_dirs)
    if mode == "v2a" and not refs and not side:
        raise ValueError("v2a needs references (--reference) or ground-truth sidecars")
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
    records = []
    for stem, path in gen.items():
        ref_key, side_key = match_stem(stem, refs), match_stem(stem, side)
        if refs and ref_key is None:
            log.warning("%s: no reference with a matching name", path.name)
        events = load_events(side[side_key]) if side_key else None
        plot_path = Path(plot_dir) / f"{stem}.png" if plot_dir is not None else None
        ref_path = refs[ref_key] if ref_key else None
        if ref_path is not None and ref_path.resolve() == path.resolve():
            ref_path = None
        rec = score_clip(path, reference=ref_path, events=events, mode=mode, plot_path=plot_path)
        if side_key:
            rec["sidecar"] = str(side[side_key])
        records.append(rec)
    return {"mode": mode, "clips": records, "summary": summarize(records)}
