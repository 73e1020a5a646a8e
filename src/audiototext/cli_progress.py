"""The CLI's rendering of a :class:`~audiototext.progress.ProgressSink`: rich bars on stderr."""

from __future__ import annotations

from typing import Any

__all__ = ["RichProgress"]


class RichProgress:
    """Renders a ProgressSink with rich bars on stderr (bytes for downloads, steps for builds)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(stderr=True)
        self._bytes = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._steps = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} steps"),
            console=self.console,
        )
        self._tasks: dict[str, tuple[Any, Any]] = {}

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in {id(b): b for b, _ in self._tasks.values()}.values():
            bar.stop()

    def task(self, key: str, description: str, total: float | None, unit: str = "B") -> None:
        bar = self._bytes if unit == "B" else self._steps
        bar.start()  # idempotent
        if key in self._tasks:
            bar.reset(self._tasks[key][1], total=total, description=description)
        else:
            self._tasks[key] = (bar, bar.add_task(description, total=total))

    def advance(self, key: str, amount: float) -> None:
        if key in self._tasks:
            bar, tid = self._tasks[key]
            bar.advance(tid, amount)

    def done(self, key: str) -> None:
        if key in self._tasks:
            bar, tid = self._tasks[key]
            total = bar.tasks[tid].total if tid < len(bar.tasks) else None
            if total is not None:
                bar.update(tid, completed=total)

    def note(self, message: str) -> None:
        self.console.print(f"[dim]{message}[/dim]")
