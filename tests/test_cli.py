"""The `audiototext` command: help everywhere, version, JSON output, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from audiototext import __version__
from audiototext.cli import build_parser, main

if TYPE_CHECKING:
    from audiototext.models import ModelCache

COMMANDS = [
    [],
    ["models"],
    ["models", "list"],
    ["models", "pull"],
    ["models", "info"],
    ["models", "rm"],
    ["models", "verify"],
    ["doctor"],
    ["transcribe"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "top")
def test_help_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: audiototext" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import av
    import onnxruntime

    with pytest.raises(SystemExit):
        main(["--version"])
    out = capsys.readouterr().out
    assert f"audiototext {__version__}" in out
    assert f"onnxruntime {onnxruntime.__version__}" in out
    assert f"PyAV {av.__version__} (FFmpeg " in out
    assert "build: installed package" in out


def test_installed_entry_point_runs() -> None:
    exe = shutil.which("audiototext") or str(Path(sys.executable).parent / "audiototext")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and __version__ in out.stdout


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["models", "pull", "tiny.en", "--precision", "int4"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_unknown_model_is_a_one_line_error_with_suggestions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["models", "pull", "tiny.ne"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: unknown model 'tiny.ne'")
        and "tiny.en" in err
        and "Traceback" not in err
    )


def test_list_info_verify_rm_with_json(
    filled_cache: ModelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {e["precision"] for e in data["cached"]} == {"int8", "fp32"}
    assert "large-v3-turbo" in {m["name"] for m in data["available"]}

    assert main(["models", "info", "tiny.en", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    kinds = [s["kind"] for s in info["sources"]]
    assert kinds == ["onnx", "transformers", "ctranslate2", "package"]
    assert len(info["cached"]) == 2

    assert main(["models", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True

    # Two entries match: rm refuses to guess.
    assert main(["models", "rm", "tiny.en"]) == 1
    assert "--all" in capsys.readouterr().err
    assert main(["models", "rm", "tiny.en", "--precision", "fp32", "--json"]) == 0
    removed = json.loads(capsys.readouterr().out)["removed"]
    assert [r["precision"] for r in removed] == ["fp32"]
    assert main(["models", "rm", "tiny.en", "--precision", "fp32"]) == 1


def test_human_output(filled_cache: ModelCache, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny.en" in out and "int8" in out
    assert main(["models", "verify"]) == 0
    assert capsys.readouterr().out.count("ok ") == 2
    assert main(["models", "pull", "tiny.en"]) == 0
    assert "already cached" in capsys.readouterr().out


def test_verify_failure_exit_code(
    filled_cache: ModelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    from audiototext.models.cache import ModelCache

    entry = ModelCache().find("tiny.en", "int8")
    entry.file("tokenizer.json").write_text("{}")
    assert main(["models", "verify"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_doctor_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "CPUExecutionProvider" in data["providers"]
    assert data["recommended_precision"] in ("int8", "fp16")


def test_parser_builds() -> None:
    assert build_parser().prog == "audiototext"
