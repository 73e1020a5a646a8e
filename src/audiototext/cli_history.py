"""``audiototext history``: list, search, export and delete the transcripts a server kept.

Reads the file ``serve --history`` writes (default: the one ``./run.sh`` uses), with the same
queries as the REST API (:mod:`audiototext.history`). Reading never creates or changes the
file; ``rm`` is the only write, and waits briefly for a running server's writer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``history`` command to the CLI's sub-parsers."""
    history = sub.add_parser(
        "history",
        help="list, search, export and delete kept transcripts",
        description="Transcripts kept by `audiototext serve --history` (./run.sh keeps them).",
    )
    hsub = history.add_subparsers(dest="history_command", metavar="ACTION")
    history.set_defaults(func=lambda a: _usage(history))

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--history",
            type=Path,
            default=None,
            metavar="PATH",
            help="the history file (default: $AUDIOTOTEXT_HOME/history.sqlite3, as ./run.sh)",
        )

    p = hsub.add_parser("list", help="sessions, newest first")
    common(p)
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--offset", type=int, default=0, help="skip this many newest first")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    p.set_defaults(func=_list)

    p = hsub.add_parser("search", help="final segments holding every word of QUERY")
    common(p)
    p.add_argument("query", help="words (all needed); word* matches a prefix")
    p.add_argument("--limit", type=int, default=20, help="how many hits (default 20)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    p.set_defaults(func=_search)

    p = hsub.add_parser("export", help="one transcript as txt, srt, vtt or json")
    common(p)
    p.add_argument("id", help="session id (from `history list`)")
    p.add_argument("--format", choices=["txt", "srt", "vtt", "json"], default="txt")
    p.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")
    p.set_defaults(func=_export)

    p = hsub.add_parser("rm", help="delete a session and its transcript")
    common(p)
    p.add_argument("id", help="session id (from `history list`)")
    p.set_defaults(func=_rm)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _path(args: argparse.Namespace) -> Path:
    if args.history is not None:
        return Path(args.history).expanduser()
    from audiototext.history.store import default_history_path

    return default_history_path()


def _positive(value: int, flag: str) -> None:
    from audiototext.errors import ConfigError

    if value < 1:
        raise ConfigError(f"{flag} must be at least 1, not {value}")


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "-"


def _list(args: argparse.Namespace) -> int:
    from audiototext.history.store import HistoryStore

    _positive(args.limit, "--limit")
    store = HistoryStore.open(_path(args), create=False, read_only=True)
    try:
        page = store.page(args.limit, max(0, args.offset))
    finally:
        store.close()
    if args.json:
        _print_json(
            {
                "sessions": [asdict(s) for s in page.sessions],
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
            }
        )
        return 0
    if not page.sessions:
        print(f"no sessions kept in {store.path}")
        return 0
    for s in page.sessions:
        i = s.info
        state = "" if i.ended_at is not None else "  (unfinished)"
        print(
            f"{i.id}  {_when(i.started_at)}  {i.source}/{i.transport or '?'}  {i.model}  "
            f"{s.segments} segments, {s.duration_s:.1f} s{state}"
        )
        print(f"    {s.preview}")
    shown = page.offset + len(page.sessions)
    if shown < page.total:
        print(f"({shown} of {page.total}; more with --offset {shown})")
    return 0


def _search(args: argparse.Namespace) -> int:
    from audiototext.errors import ConfigError
    from audiototext.history.store import HistoryStore

    _positive(args.limit, "--limit")
    if not args.query.strip():
        raise ConfigError("the search query is blank; give a word to search for")
    store = HistoryStore.open(_path(args), create=False, read_only=True)
    try:
        hits = store.search(args.query, args.limit)
    finally:
        store.close()
    if args.json:
        _print_json(
            {
                "query": args.query,
                "hits": [
                    {"session": asdict(h.session), "final": asdict(h.final), "snippet": h.snippet}
                    for h in hits
                ],
            }
        )
        return 0
    if not hits:
        print(f"nothing matches {args.query!r}")
        return 1
    for h in hits:
        i = h.session.info
        print(f"{i.id}  {_when(i.started_at)}  {h.final.start_s:7.1f} s  {h.snippet.strip()}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from audiototext.history.export import render_transcript
    from audiototext.history.store import HistoryStore

    store = HistoryStore.open(_path(args), create=False, read_only=True)
    try:
        transcript = store.get(args.id)
    finally:
        store.close()
    text = render_transcript(transcript, args.format)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    from audiototext.errors import ConfigError
    from audiototext.store.exports import write_text

    try:
        write_text(text, args.output)
    except OSError as exc:
        raise ConfigError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _rm(args: argparse.Namespace) -> int:
    from audiototext.history.store import HistoryStore

    store = HistoryStore.open(_path(args), create=False)
    try:
        store.delete_now(args.id)
    finally:
        store.close()
    print(f"removed session {args.id}")
    return 0


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
