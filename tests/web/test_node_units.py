"""Runs the web page's JavaScript unit tests (``node --test tests/web/``) inside the Python suite.

The page's pure modules (transcript model, exporters, resume bookkeeping, i18n, resampler)
are tested by ``tests/web/*.test.mjs`` with Node's own test runner; this test fails with
Node's output when they fail, and is skipped when Node (20 or newer) is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MIN_NODE_MAJOR = 20


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the web page's JavaScript unit tests need Node.js 20+")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        pytest.skip(f"node {version or '(unknown version)'} is older than {MIN_NODE_MAJOR}")
    return node


def test_node_unit_tests_pass() -> None:
    node = _node()
    assert sorted(HERE.glob("*.test.mjs")), "no tests/web/*.test.mjs found"
    proc = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(HERE.relative_to(REPO))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"node --test tests/web/ failed (exit {proc.returncode}):\n{output}")
    assert re.search(r"\bpass \d+", output), f"no test ran:\n{output}"
    assert not re.search(r"\bfail [1-9]", output), output
