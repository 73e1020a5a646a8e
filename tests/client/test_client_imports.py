"""The client is an adapter over the wire protocol: it must not drag in the server or the engine.

Checked in a fresh interpreter, because this test session has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "onnxruntime",
    "audiototext.streaming",
    "audiototext.server",
    "audiototext.inference",
)


def _loaded_after(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    modules: list[str] = json.loads(out.splitlines()[-1])
    return modules


def test_importing_the_client_loads_no_server_and_no_engine() -> None:
    loaded = _loaded_after("import audiototext.client")
    assert "audiototext.client" in loaded
    assert "audiototext.wire._proto.transcription_pb2_grpc" in loaded
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"import audiototext.client loaded {bad}"


def test_importing_a_server_submodule_does_not_load_the_application() -> None:
    loaded = _loaded_after("import audiototext.server.engine")
    assert "audiototext.server.engine" in loaded
    assert "audiototext.server.app" not in loaded
    assert "grpc_reflection" not in loaded


def test_the_engine_value_objects_load_without_the_recognizer() -> None:
    loaded = _loaded_after("import audiototext.streaming.types")
    assert "audiototext.streaming.recognizer" not in loaded
    assert "onnxruntime" not in loaded
