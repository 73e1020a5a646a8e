"""The performance profile as the server uses it: read at start-up, rebuilt in the background.

``serve`` reads ``<cache>/profile.json`` (:mod:`audiototext.hardware.profile`) once it has
started and logs what it found. With ``serve --benchmark-on-start`` a missing, stale or
corrupt profile is rebuilt by ``audiototext doctor --benchmark --if-stale --low-priority`` in
a child process: at nice 19 and at most half the usable cores per variant, so the live streams
keep the CPU they need; the server reads the new file when the child ends. REST
``/api/v1/system/profile`` and gRPC ``System.GetHardware`` both answer from :meth:`report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiototext.hardware.benchmark import DEFAULT_BUDGET_S
from audiototext.hardware.profile import LoadedProfile, stored_profile
from audiototext.hardware.recommend import Recommendation, recommend

__all__ = ["ProfileKeeper", "ProfileReport", "rebuild_command"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileReport:
    state: str  # fresh, missing, stale, corrupt, or "unread" before start-up read it
    path: str
    message: str
    rebuilding: bool  # a low-priority rebuild is running
    recommendation: Recommendation | None
    profile: dict[str, Any] | None  # the stored document when fresh

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "path": self.path,
            "message": self.message,
            "rebuilding": self.rebuilding,
            "recommendation": self.recommendation.to_json() if self.recommendation else None,
            "profile": self.profile,
        }


def rebuild_command(max_threads: int, budget_s: float = DEFAULT_BUDGET_S) -> list[str]:
    """``audiototext doctor --benchmark`` at low priority, as this installation runs it."""
    base = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m"]
    if not getattr(sys, "frozen", False):
        base.append("audiototext.cli")
    return [
        *base,
        "doctor",
        "--benchmark",
        "--if-stale",
        "--low-priority",
        "--max-threads",
        str(max(1, max_threads)),
        "--budget-s",
        f"{budget_s:g}",
        "--json",
    ]


class ProfileKeeper:
    def __init__(
        self, cache_root: Path | None, *, rebuild: bool = False, budget_s: float = DEFAULT_BUDGET_S
    ) -> None:
        self.cache_root = cache_root
        self.rebuild = rebuild
        self.budget_s = budget_s
        self._loaded: LoadedProfile | None = None
        self._recommendation: Recommendation | None = None
        self._task: asyncio.Task[None] | None = None
        self.child: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        await self._read()
        if self.rebuild and self._loaded is not None and self._loaded.needs_rebuild:
            self._task = asyncio.create_task(self._rebuild(), name="profile-rebuild")

    async def _read(self) -> None:
        loaded = await asyncio.to_thread(stored_profile, self.cache_root)
        self._loaded = loaded
        self._recommendation = recommend(loaded.profile) if loaded.profile else None
        if loaded.state == "fresh" and self._recommendation is not None:
            r = self._recommendation
            log.info(
                "%s: recommends %s %s, %d thread(s), %d stream(s), partials every %d ms",
                loaded.message,
                r.model,
                r.precision,
                r.threads,
                r.streams,
                r.partial_interval_ms,
            )
        elif loaded.state != "corrupt":  # a corrupt file was logged as a warning already
            log.info("%s", loaded.message)

    async def _rebuild(self) -> None:
        from audiototext.hardware.detect import detect

        cores = detect().usable_cores or 1
        env = dict(os.environ)
        if self.cache_root is not None:
            env["AUDIOTOTEXT_HOME"] = str(self.cache_root)
        command = rebuild_command(max(1, cores // 2), self.budget_s)
        log.info("rebuilding the performance profile at low priority: %s", " ".join(command))
        try:
            self.child = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
            _, err = await self.child.communicate()
        except OSError as exc:
            log.warning("cannot start the profile rebuild (%s): %s", command[0], exc)
            return
        if self.child.returncode != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            log.warning("the profile rebuild failed (exit %s): %s", self.child.returncode, tail[0])
        await self._read()

    async def wait_rebuilt(self) -> None:
        """Until a rebuild started by :meth:`start` has ended (tests, benchmarks)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self.child is not None and self.child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.terminate()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def report(self) -> ProfileReport:
        loaded = self._loaded
        rebuilding = self._task is not None and not self._task.done()
        if loaded is None:
            return ProfileReport("unread", "", "the profile is being read", rebuilding, None, None)
        return ProfileReport(
            state=loaded.state,
            path=str(loaded.path),
            message=loaded.message,
            rebuilding=rebuilding,
            recommendation=self._recommendation,
            profile=loaded.profile.to_json() if loaded.profile else None,
        )
