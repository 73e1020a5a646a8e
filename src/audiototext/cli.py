"""The ``audiototext`` command. Only this module configures logging and prints."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from audiototext.cli_progress import RichProgress
from audiototext.errors import AudioToTextError, UnknownModelError

log = logging.getLogger("audiototext")


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------- models


def _cmd_models_list(args: argparse.Namespace) -> int:
    from audiototext.models.cache import ModelCache
    from audiototext.models.registry import KNOWN_MODELS

    cache = ModelCache()
    entries, damaged = cache.scan()
    if args.json:
        _print_json(
            {
                "cached": [e.to_json() for e in entries],
                "damaged": [{"path": str(p), "reason": r} for p, r in damaged],
                "available": [
                    {
                        "name": m.name,
                        "languages": m.languages,
                        "params_millions": m.params_millions,
                        "download_mb": m.download_mb,
                        "ram_mb": m.ram_mb,
                        "n_mels": m.n_mels,
                        "sources": [s.repo_id for s in m.sources],
                    }
                    for m in KNOWN_MODELS.values()
                ],
                "cache_dir": str(cache.root),
            }
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Cached models ({cache.models_dir})")
    for col in ("model", "version", "precision", "size", "source", "created"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e.name,
            e.version_id,
            e.precision,
            _human_size(e.size_bytes),
            e.source["repo_id"],
            e.created_at,
        )
    if entries:
        console.print(table)
    else:
        console.print(
            f"No models cached in {cache.models_dir} yet. Try: audiototext models pull tiny.en"
        )
    for path, reason in damaged:
        console.print(f"[yellow]damaged entry[/yellow] {path}: {reason}")
    if damaged:
        console.print("remove those with: audiototext models prune")
    avail = Table(title="Known models (any Hugging Face Whisper repo id works too)")
    for col in ("name", "languages", "params", "download", "RAM (int8)", "cached"):
        avail.add_column(col)
    cached_names = {e.name for e in entries}
    for m in KNOWN_MODELS.values():
        avail.add_row(
            m.name,
            m.languages,
            f"{m.params_millions:.0f} M",
            f"{m.download_mb} MB",
            f"~{m.ram_mb} MB",
            "yes" if m.name in cached_names else "",
        )
    console.print(avail)
    return 0


def _cmd_models_pull(args: argparse.Namespace) -> int:
    from audiototext.models.manager import pull

    with RichProgress() as progress:
        result = pull(
            args.name,
            revision=args.revision,
            precision=args.precision,
            force=args.force,
            update=args.update,
            progress=progress,
        )
    e = result.entry
    if args.json:
        _print_json(
            {
                **e.to_json(),
                "already_cached": result.cached,
                "skipped_sources": list(result.attempts),
                "validation": e.manifest.get("validation"),
                "build": e.manifest.get("build"),
            }
        )
        return 0
    for a in result.attempts:
        print(f"note: {a}", file=sys.stderr)
    state = "already cached" if result.cached else f"built in {e.manifest['build']['seconds']} s"
    print(f"{e.name} {e.precision} ({e.version_id}, {_human_size(e.size_bytes)}): {state}")
    print(f"  {e.path}")
    return 0


def _cmd_models_info(args: argparse.Namespace) -> int:
    from audiototext.models.cache import ModelCache
    from audiototext.models.registry import resolve

    spec = resolve(args.name)
    entries = ModelCache().entries(spec.name)
    data = {
        "name": spec.name,
        "description": spec.description,
        "languages": spec.languages,
        "n_mels": spec.n_mels,
        "params_millions": spec.params_millions,
        "download_mb": spec.download_mb,
        "ram_mb": spec.ram_mb,
        "sources": [
            {"kind": s.kind, "repo_id": s.repo_id, "revision": s.revision} for s in spec.sources
        ],
        "cached": [{**e.to_json(), "manifest": e.manifest} for e in entries],
    }
    if args.json:
        _print_json(data)
        return 0
    print(f"{spec.name}: {spec.description or 'Whisper model'}")
    print(f"  languages: {spec.languages}; mel bins: {spec.n_mels}")
    if spec.params_millions:
        print(
            f"  parameters: {spec.params_millions:.0f} M; download ~{spec.download_mb} MB; "
            f"RAM ~{spec.ram_mb} MB (int8)"
        )
    print("  sources, in the order tried:")
    for s in spec.sources:
        print(f"    {s.kind:<12} {s.repo_id}@{s.revision}")
    if not entries:
        print(f"  not cached (audiototext models pull {spec.name})")
    for e in entries:
        m = e.manifest
        print(
            f"  cached {e.version_id}/{e.precision}: {_human_size(e.size_bytes)}, "
            f"commit {e.commit}, "
            f"onnxruntime {m['onnxruntime_version']}, opset {m['opset']}, created {e.created_at}"
        )
        print(f"    {e.path}")
    return 0


def _cmd_models_rm(args: argparse.Namespace) -> int:
    from audiototext.models.cache import ModelCache
    from audiototext.models.registry import resolve

    cache = ModelCache()
    spec = resolve(args.name)
    chosen = [
        e for e in cache.entries(spec.name, args.precision) if e.matches_version(args.version)
    ]
    if not chosen:
        print(
            f"error: no cached entry of {spec.name} matches (see: audiototext models list)",
            file=sys.stderr,
        )
        return 1
    if len(chosen) > 1 and not args.all:
        print(
            f"error: {len(chosen)} entries of {spec.name} match; "
            "pick one with --version/--precision "
            "or remove them all with --all:",
            file=sys.stderr,
        )
        for e in chosen:
            print(f"  --version {e.version_id} --precision {e.precision}", file=sys.stderr)
        return 1
    for e in chosen:
        cache.remove(e)
    if args.json:
        _print_json({"removed": [e.to_json() for e in chosen]})
    else:
        for e in chosen:
            print(f"removed {e.name} {e.version_id}/{e.precision} ({_human_size(e.size_bytes)})")
    return 0


def _cmd_models_verify(args: argparse.Namespace) -> int:
    from audiototext.models.manager import verify

    reports, damaged = verify(args.name, args.precision, args.version)
    ok = all(r.ok for r in reports) and not damaged
    if args.json:
        _print_json(
            {
                "ok": ok,
                "entries": [r.to_json() for r in reports],
                "damaged": [{"path": str(p), "reason": why} for p, why in damaged],
            }
        )
        return 0 if ok else 1
    if not reports and not damaged:
        print("nothing to verify: the cache is empty")
    for r in reports:
        e = r.entry
        if r.ok:
            print(
                f"ok      {e.name} {e.version_id}/{e.precision}: files match, self-check within "
                f"{r.tolerance:.0e} (max rel err {r.max_rel_err:.1e})"
            )
        else:
            print(f"FAILED  {e.name} {e.version_id}/{e.precision}: {'; '.join(r.problems)}")
    for path, why in damaged:
        print(f"FAILED  {path}: {why}")
    if not ok:
        print(
            "remove failed entries with `audiototext models rm` (damaged or outdated ones: "
            "`audiototext models prune`) and pull them again",
            file=sys.stderr,
        )
    return 0 if ok else 1


def _cmd_models_prune(args: argparse.Namespace) -> int:
    """Remove the entries `models list` shows as damaged or outdated (not bundled ones)."""
    from audiototext.errors import CacheError
    from audiototext.models.cache import ModelCache

    cache = ModelCache()
    _, damaged = cache.scan()
    removed: list[dict[str, str]] = []
    kept: list[dict[str, str]] = []
    for path, reason in damaged:
        try:
            cache.remove(path)
        except (CacheError, OSError) as exc:
            kept.append({"path": str(path), "reason": str(exc)})
        else:
            removed.append({"path": str(path), "reason": reason})
    if args.json:
        _print_json({"removed": removed, "kept": kept})
    else:
        for r in removed:
            print(f"removed {r['path']} ({r['reason']})")
        for k in kept:
            print(f"kept {k['path']}: {k['reason']}", file=sys.stderr)
        if not removed and not kept:
            print(f"nothing to prune in {cache.models_dir}")
    return 1 if kept else 0


# --------------------------------------------------------------------------- parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


# Commands whose modules are light, and those registered by cli_serve/cli_stream.
_EAGER_COMMANDS = frozenset({"models", "transcribe", "doctor", "history"})
_LAZY_COMMANDS = ("serve", "stream", "mic")


def _command_in(argv: Sequence[str] | None) -> str | None:
    """The sub-command ``argv`` runs: its first word that is not an option (the top-level
    options take no values); None when there is none or ``argv`` is not given."""
    if argv is None:
        return None
    return next((a for a in argv if not a.startswith("-")), None)


class _VersionAction(argparse.Action):
    """``--version``: like argparse's, but the engine libraries are imported only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from audiototext._buildinfo import version_text

        print(version_text())
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; given the ``argv`` it will parse, it skips commands it cannot run."""
    parser = argparse.ArgumentParser(
        prog="audiototext",
        description="Real-time speech-to-text on your own machine (Whisper on ONNX Runtime).",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="versions of audiototext, ONNX Runtime, PyAV/FFmpeg and the build's commit",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_json(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")

    models = sub.add_parser(
        "models",
        help="download, convert, list, verify and remove models",
        description="Manage the converted-model cache (AUDIOTOTEXT_HOME).",
    )
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    models.set_defaults(func=lambda a: _usage(models))

    p = msub.add_parser("list", help="cached models and known model names")
    add_json(p)
    p.set_defaults(func=_cmd_models_list)

    p = msub.add_parser(
        "pull",
        help="download and convert a model (short name or Hugging Face repo id)",
        description="Download a model, convert it to ONNX, validate and optimise it for this "
        "machine, and store it in the cache. Already cached: returns at once.",
    )
    p.add_argument("name", help="short name (e.g. tiny.en) or Hugging Face repo id (org/name)")
    p.add_argument("--revision", help="branch, tag or commit to pin (default: main)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "int8", "fp16"],
        help="model variant; auto = int8 on CPU, fp16 on a CUDA-class GPU (default: auto)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if this version is cached")
    p.add_argument("--update", action="store_true", help="check the Hub for a newer commit")
    add_json(p)
    p.set_defaults(func=_cmd_models_pull)

    p = msub.add_parser("info", help="what is known and cached about a model")
    p.add_argument("name")
    add_json(p)
    p.set_defaults(func=_cmd_models_info)

    p = msub.add_parser("rm", help="remove a cached model version")
    p.add_argument("name")
    p.add_argument("--version", help="version id from `models list` (or a commit prefix)")
    p.add_argument("--precision", choices=["fp32", "int8", "fp16"])
    p.add_argument("--all", action="store_true", help="remove every matching entry")
    add_json(p)
    p.set_defaults(func=_cmd_models_rm)

    p = msub.add_parser(
        "prune", help="remove damaged and outdated cache entries (see `models list`)"
    )
    add_json(p)
    p.set_defaults(func=_cmd_models_prune)

    p = msub.add_parser(
        "verify",
        help="re-check file hashes and re-run the numeric self-check",
        description="Exit status 1 if any entry fails.",
    )
    p.add_argument("name", nargs="?", help="model to verify (default: every cached model)")
    p.add_argument("--version")
    p.add_argument("--precision", choices=["fp32", "int8", "fp16"])
    add_json(p)
    p.set_defaults(func=_cmd_models_verify)

    from audiototext.cli_transcribe import register as register_transcribe

    register_transcribe(sub)

    from audiototext.cli_history import register as register_history

    register_history(sub)

    # The server and client commands import asyncio, ssl and more, memory no other command
    # needs (bench/NOTES.md): for those they get placeholders that only make the names known.
    command = _command_in(argv)
    if command is None or command not in _EAGER_COMMANDS:
        from audiototext.cli_serve import register as register_serve

        register_serve(sub)

        from audiototext.cli_stream import register as register_stream

        register_stream(sub)
    else:
        for name in _LAZY_COMMANDS:
            sub.add_parser(name)

    from audiototext.cli_doctor import register as register_doctor

    register_doctor(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # onnxruntime's quantiser logs advice for image models through the root logger.
    logging.getLogger().setLevel(level)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except UnknownModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AudioToTextError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
