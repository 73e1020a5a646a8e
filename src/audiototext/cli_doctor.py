"""``audiototext doctor``: this machine, its performance profile, and what to run on it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from audiototext.errors import ConfigError

__all__ = ["doctor_report", "register"]


def register(sub: Any) -> None:
    """Add the ``doctor`` command to the CLI's sub-parsers."""
    from audiototext.hardware.benchmark import DEFAULT_BUDGET_S

    p = sub.add_parser(
        "doctor",
        help="hardware, ONNX Runtime devices, the performance profile and recommendations",
        description="Describe this machine (CPU, instruction sets, memory, container limits, "
        "GPUs, disk in the model cache) and recommend a model, precision, threads, stream "
        "count and partial interval from the stored performance profile. --benchmark "
        "measures the cached models here first and stores the profile in the cache.",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    p.add_argument(
        "--benchmark",
        action="store_true",
        help="time every cached model and precision here and store the profile "
        "(the server reads it at start-up)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds the benchmark may take (default {DEFAULT_BUDGET_S:g})",
    )
    p.add_argument(
        "--max-threads",
        type=int,
        default=None,
        help="time at most this many ONNX Runtime threads (default: every usable core)",
    )
    p.add_argument(
        "--if-stale",
        action="store_true",
        help="with --benchmark: only when the stored profile is missing, corrupt or was "
        "measured on other hardware, software or models",
    )
    p.add_argument(
        "--low-priority",
        action="store_true",
        help="with --benchmark: run at the lowest CPU priority (nice 19), as a server does",
    )
    p.set_defaults(func=_cmd_doctor)


def doctor_report(profile_json: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``doctor --json`` prints (blocking: probes devices, reads the cache)."""
    from audiototext.hardware import detect, pick_precision
    from audiototext.hardware.detect import observe
    from audiototext.hardware.probe import probe_devices
    from audiototext.hardware.profile import stored_profile
    from audiototext.hardware.recommend import recommend

    hardware = detect()
    loaded = stored_profile()
    rec = recommend(loaded.profile) if loaded.profile is not None else None
    return {
        **hardware.to_json(),
        "recommended_precision": pick_precision(hardware),
        "now": observe(profile=hardware).to_json(),
        "devices": [
            {"name": d.name, "available": d.available, "reason": d.reason} for d in probe_devices()
        ],
        "profile": {
            "state": loaded.state,
            "path": str(loaded.path),
            "message": loaded.message,
            "measurements": (
                profile_json or (loaded.profile.to_json() if loaded.profile else {})
            ).get("measurements", []),
        },
        "recommendation": rec.to_json() if rec else None,
    }


def _benchmark(args: argparse.Namespace) -> dict[str, Any] | None:
    """Run and store the benchmark (None: --if-stale found a fresh profile)."""
    from audiototext.hardware import detect
    from audiototext.hardware.benchmark import run_benchmark
    from audiototext.hardware.profile import save_profile, stored_profile
    from audiototext.models.cache import ModelCache

    if not args.budget_s > 0:
        raise ConfigError(f"--budget-s must be positive, not {args.budget_s:g}")
    if args.max_threads is not None and args.max_threads < 1:
        raise ConfigError(f"--max-threads must be at least 1, not {args.max_threads}")
    loaded = stored_profile()
    if args.if_stale and not loaded.needs_rebuild:
        return None
    if loaded.state in ("stale", "corrupt"):
        print(f"note: {loaded.message}", file=sys.stderr)
    entries, _ = ModelCache().scan()
    if not entries:
        raise ConfigError(
            "no models are cached, so there is nothing to time: "
            "audiototext models pull tiny.en, then run doctor --benchmark again"
        )
    if args.low_priority and hasattr(os, "nice"):
        os.nice(19)
    from audiototext.cli_progress import RichProgress

    with RichProgress() as progress:
        profile = run_benchmark(
            entries,
            detect(),
            budget_s=args.budget_s,
            max_threads=args.max_threads,
            progress=progress,
        )
    save_profile(profile, loaded.path)
    print(
        f"profile of {len(profile.measurements)} variant(s) in {profile.elapsed_s:.1f} s "
        f"stored in {loaded.path}",
        file=sys.stderr,
    )
    for why in profile.skipped:
        print(f"note: not timed: {why}", file=sys.stderr)
    return profile.to_json()


def _cmd_doctor(args: argparse.Namespace) -> int:
    profile_json = _benchmark(args) if args.benchmark else None
    data = doctor_report(profile_json)
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    _print_human(data)
    return 0


def _print_human(data: dict[str, Any]) -> None:
    skip = {"now", "devices", "profile", "recommendation", "cgroup"}
    for k, v in data.items():
        if k not in skip:
            print(f"{k:>22}: {', '.join(map(str, v)) if isinstance(v, list) else v}")
    cg = data["cgroup"]
    quota = cg["cpu_quota_cores"]
    limit = cg["memory_limit_mb"]
    print(
        f"{'container':>22}: cgroup v{cg['cgroup_version']}, CPU quota "
        f"{'none' if quota is None else f'{quota:g} cores'}, memory limit "
        f"{'none' if limit is None else f'{limit} MB'}"
    )
    now = data["now"]
    print(f"{'memory available':>22}: {now['memory_available_mb']} MB")
    print(f"{'cpu clock':>22}: {now['cpu_freq_mhz'] or 'not reported'} MHz")
    print(f"{'disk free (cache)':>22}: {now['disk_free_mb']} MB in {now['cache_dir']}")
    nv = now["nvidia"]
    if nv["available"]:
        for g in nv["gpus"]:
            print(
                f"{'gpu ' + str(g['index']):>22}: {g['name']}, {g['memory_free_mb']} of "
                f"{g['memory_total_mb']} MB free, driver {nv['driver_version']}, "
                f"CUDA {nv['cuda_version']}"
            )
    else:
        print(f"{'nvidia':>22}: {nv['reason']}")
    for d in data["devices"]:
        state = "available" if d["available"] else f"not available: {d['reason']}"
        print(f"{'device ' + d['name']:>22}: {state}")
    prof = data["profile"]
    print(f"\nperformance profile ({prof['state']}): {prof['message']}")
    for m in prof["measurements"]:
        print(
            f"  {m['model']} {m['precision']}, {m['threads']} thread(s): final of a "
            f"{m['utterance_s']:g}-s utterance {1000 * m['final_s']:.0f} ms, partial "
            f"{1000 * m['partial_s']:.0f} ms"
        )
    rec = data["recommendation"]
    if rec is None:
        print("no recommendation without a profile: audiototext doctor --benchmark")
        return
    reasons = rec["reasons"]
    print("\nrecommended:")
    print(f"  model      {rec['model']} {rec['precision']}: {reasons['model']}")
    print(f"  threads    {rec['threads']}: {reasons['threads']}")
    print(f"  streams    {rec['streams']}: {reasons['streams']}")
    print(f"  partials   every {rec['partial_interval_ms']} ms: {reasons['partial_interval_ms']}")
