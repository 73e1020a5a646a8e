"""The server process limits OpenBLAS to one thread (its spinning threads took CPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from audiototext.streaming._blas import blas_threads, limit_blas_threads


def test_limit_blas_threads_sets_every_loaded_openblas() -> None:
    # In a child process: the setting is process-wide, and other tests keep numpy's default.
    code = (
        "import numpy as np\n"
        "from audiototext.streaming._blas import blas_threads, limit_blas_threads\n"
        "np.ones((64, 64)) @ np.ones((64, 64))\n"
        "before = blas_threads()\n"
        "n = limit_blas_threads(1)\n"
        "import json\n"
        "print(json.dumps([before, n, blas_threads()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    if not blas_threads():
        pytest.skip("numpy here is not built on OpenBLAS")
    before, done, after = json.loads(out)
    assert done == len(after) >= 1
    assert after == [1] * len(after)
    assert len(before) == len(after)
    assert np.isfinite((np.ones((8, 8)) @ np.ones((8, 8))).sum())


def test_limit_blas_threads_rejects_zero() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        limit_blas_threads(0)
