"""What a dub/animate run reports as it goes: the `Progress` protocol every layer calls (inputs
started and done, batched sampling rounds, steps, clips finished), the live rich display the CLI
shows on stderr, and the closing summary.

The display has one bar for the inputs of this run (this shard under torchrun), one bar per clip
in flight (its windows; a long input has many), and one for the sampling steps of the batched
round running now. The CLI shows it only on a terminal and without --json. On a GPU the step bar
runs ahead of the device: the sampling loop never waits for it (no host-device syncs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from .outputs import Result


class Progress:
    """Hooks a run calls as it goes; this base does nothing, but passes sampling steps to `step`
    when given one (a callable (steps done, total steps))."""

    def __init__(self, step: Callable[[int, int], None] | None = None) -> None:
        self._step = step

    def start(self, total: int) -> None:
        """`total` inputs will be reported."""

    def done(self, res: Result) -> None:
        """One input is finished (ok, skipped or failed)."""

    def round(self, jobs: list, windows: list[int]) -> None:
        """A batched sampling round starts: jobs[i] is at window windows[i]."""

    def step(self, done: int, total: int) -> None:
        """A sampling step of the current round is done."""
        if self._step is not None:
            self._step(done, total)

    def finished(self, job: Any) -> None:
        """A clip (one sample of one input) is complete, or failed."""


def _label(job: Any) -> str:
    name = getattr(job, "label", "") or "clip"
    return name if len(name) <= 28 else name[:12] + "…" + name[-15:]


class RichProgress(Progress):
    """Live bars: inputs done, windows of each clip in flight, steps of the current round."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bars

        super().__init__()
        self.bar = Bars(
            TextColumn("{task.description:<30}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.clips: dict[int, Any] = {}
        self.inputs = self.sampling = None

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, total: int) -> None:
        self.inputs = self.bar.add_task("inputs", total=total)
        self.sampling = self.bar.add_task("sampling", total=None, visible=False)

    def round(self, jobs: list, windows: list[int]) -> None:
        for job, k in zip(jobs, windows, strict=True):
            if id(job) not in self.clips:
                n = len(job.plan)
                self.clips[id(job)] = self.bar.add_task(f"  {_label(job)}", total=n)
            self.bar.update(self.clips[id(job)], completed=k)
        desc = f"sampling {len(jobs)} clip{'s' if len(jobs) > 1 else ''}"
        self.bar.update(self.sampling, description=desc, completed=0, total=None, visible=True)

    def step(self, done: int, total: int) -> None:
        self.bar.update(self.sampling, completed=done, total=total)

    def finished(self, job: Any) -> None:
        if (task := self.clips.pop(id(job), None)) is not None:
            self.bar.remove_task(task)

    def done(self, res: Result) -> None:
        if self.inputs is not None:
            self.bar.advance(self.inputs)


def summary(console: Console, results: list[Result], wall: float) -> None:
    """One line: how many inputs were done, skipped and failed, and the speed against real time."""
    count = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "error")}
    media_s = sum(r.duration for r in results if r.status == "ok")
    parts = [f"[green]{count['ok']} done[/]"]
    if count["skipped"]:
        parts.append(f"[cyan]{count['skipped']} skipped[/] (outputs exist)")
    if count["error"]:
        parts.append(f"[red]{count['error']} failed[/]")
    speed = f", {media_s / wall:.2f}x real time" if media_s and wall > 0 else ""
    console.print(f"avlink: {', '.join(parts)} in {wall:.1f} s{speed}", highlight=False)
