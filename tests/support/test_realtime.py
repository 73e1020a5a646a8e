"""The realtime lock: an exclusive holder waits for shared ones and blocks new ones."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from support.realtime import machine_share

ROOT = Path(__file__).resolve().parents[1]
_HOLDER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from support.realtime import machine_share
with machine_share(exclusive={exclusive}, locks=Path({locks!r})):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _holder(locks: Path, exclusive: bool) -> subprocess.Popen[str]:
    code = _HOLDER.format(tests=str(ROOT), exclusive=exclusive, locks=str(locks))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) == 0


def _acquire_in_thread(locks: Path, exclusive: bool) -> tuple[threading.Event, threading.Event]:
    got, done = threading.Event(), threading.Event()

    def take() -> None:
        with machine_share(exclusive=exclusive, locks=locks):
            got.set()
            done.wait(30)

    threading.Thread(target=take, daemon=True).start()
    return got, done


def test_exclusive_waits_for_a_shared_holder(tmp_path: Path) -> None:
    shared = _holder(tmp_path, exclusive=False)
    got, done = _acquire_in_thread(tmp_path, exclusive=True)
    assert not got.wait(1.0), "took the machine while another test was running"
    _release(shared)
    assert got.wait(30)
    done.set()


def test_shared_holders_run_together_and_wait_for_an_exclusive_one(tmp_path: Path) -> None:
    shared = _holder(tmp_path, exclusive=False)
    got, done = _acquire_in_thread(tmp_path, exclusive=False)
    assert got.wait(30), "two ordinary tests could not run side by side"
    done.set()
    _release(shared)
    exclusive = _holder(tmp_path, exclusive=True)
    got, done = _acquire_in_thread(tmp_path, exclusive=False)
    assert not got.wait(1.0), "an ordinary test started beside a realtime one"
    _release(exclusive)
    assert got.wait(30)
    done.set()
