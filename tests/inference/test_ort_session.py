"""How ONNX Runtime sessions are configured (the thread settings the benchmarks rely on)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiototext.inference import OrtConfig
from audiototext.inference.ort_session import _session_options
from audiototext.inference.whisper import WhisperModel


def test_thread_pools_stop_spinning_when_a_run_returns() -> None:
    # Two sessions (encoder, decoder) share two cores: a pool left spinning after its run
    # takes a core from the other's next run (bench/NOTES.md, round 8).
    options = _session_options(OrtConfig(intra_op_threads=2))
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_spinning_is_on_by_default_and_can_be_turned_off() -> None:
    on = _session_options(OrtConfig(intra_op_threads=2))
    off = _session_options(OrtConfig(intra_op_threads=2, spinning=False))
    assert on.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_heap_is_trimmed_only_when_it_grows_above_its_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each window frees its working set and the next one reuses it from the heap: trimming it
    # every window made every window fault it in again (bench/NOTES.md, round 10).
    from audiototext import _allocator

    trims: list[int] = []
    rss_mb = [200.0]
    page_mb = _allocator._PAGE_MB
    monkeypatch.setattr(_allocator, "_malloc_trim", lambda: trims.append)
    monkeypatch.setattr(_allocator, "_rss_pages", lambda: int(rss_mb[0] / page_mb))
    monkeypatch.setattr(_allocator, "_level", [0])

    _allocator.release_memory()  # e.g. after the sessions are loaded
    assert trims == [0]
    for rss in (250.0, 252.0, 249.0, 265.0):  # windows: the first sets the level
        rss_mb[0] = rss
        _allocator.release_memory_if_grown(16.0)
    assert trims == [0]
    rss_mb[0] = 267.0  # 17 MB above the level: fragmentation, trimmed
    _allocator.release_memory_if_grown(16.0)
    assert trims == [0, 0]
    for rss in (280.0, 290.0):  # the level is taken again after a trim
        rss_mb[0] = rss
        _allocator.release_memory_if_grown(16.0)
    assert trims == [0, 0]


def test_heap_is_not_trimmed_after_a_short_file_s_features(monkeypatch: pytest.MonkeyPatch) -> None:
    # A short file's audio is small beside the encoder's working set, which a trim would make
    # fault in again; a long block's chunks are worth returning.
    import numpy as np

    from audiototext.audio import feature_stream

    trims: list[None] = []
    monkeypatch.setattr(feature_stream, "release_memory", lambda: trims.append(None))
    rate = 16_000
    short = np.zeros(30 * rate, dtype=np.float32)
    feature_stream.FeatureStream(iter([short]), 80, 3000).window(0)
    assert trims == []
    long = [np.zeros(30 * rate, dtype=np.float32) for _ in range(4)]
    feature_stream.FeatureStream(iter(long), 80, 3000).window(0)
    assert trims == [None]


_ALLOCATOR_PROBE = r"""
import ctypes, json, sys

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "session":
    from pathlib import Path
    from audiototext.inference.ort_session import OrtSession, OrtConfig
    OrtSession(Path(sys.argv[2]), OrtConfig(device="cpu", intra_op_threads=1))

def mapped(size):
    # Whether a block of `size` is mapped on its own: allocate, free, allocate again (glibc's
    # dynamic threshold rises to the size of a freed mapped block, so the second one would come
    # from the heap), and measure the mapped bytes while the second one is alive.
    libc.free(libc.malloc(size))
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    grown = libc.mallinfo2().hblkhd - before
    libc.free(block)
    return grown >= size

def heap_kept():
    # Whether 40 MB freed at the top of the heap stays there (glibc's trim threshold above it),
    # where later large requests are served from before any is mapped.
    blocks = [0] * 640  # the list's own storage first, below the blocks
    for i in range(len(blocks)):
        blocks[i] = libc.malloc(64 * 1024)
    before = libc.mallinfo2().arena
    for block in reversed(blocks):
        libc.free(block)
    return before - libc.mallinfo2().arena < 2**20

print(json.dumps({"beam_logits": mapped(5 * 51864 * 4), "encoder_block": mapped(1500 * 384 * 4),
                  "ffn": mapped(1500 * 1536 * 4), "heap_kept": heap_kept()}))
"""


def _probe_allocator(*argv: str, env: dict[str, str] | None = None) -> dict[str, bool]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))}
    clean.pop("AUDIOTOTEXT_MMAP_THRESHOLD", None)
    out = subprocess.run(
        [sys.executable, "-c", _ALLOCATOR_PROBE, *argv],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_sessions_fix_glibc_s_mmap_threshold(tmp_path: Path) -> None:
    # glibc's dynamic threshold lets every freed tensor up to 32 MB back into the heap, where
    # they leave holes and the heap grows with the file's length (bench/NOTES.md, round 11).
    # A session fixes it: blocks of 1 MiB or more stay mapped (beam search's logits, just
    # under, do not), and the heap's top is no longer returned at every free.
    import onnx
    from onnx import TensorProto, helper

    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018
    except AttributeError:
        pytest.skip("needs glibc >= 2.33")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    glibc_default = _probe_allocator("none")
    assert glibc_default == {
        "beam_logits": False, "encoder_block": False, "ffn": False, "heap_kept": False
    }  # fmt: skip
    tuned = _probe_allocator("session", str(path))
    assert tuned == {"beam_logits": False, "encoder_block": True, "ffn": True, "heap_kept": True}
    # "off" leaves glibc's dynamic thresholds, and the person's own settings win.
    assert _probe_allocator("session", str(path), env={"AUDIOTOTEXT_MMAP_THRESHOLD": "off"}) == (
        glibc_default
    )
    assert _probe_allocator(
        "session", str(path), env={"MALLOC_MMAP_THRESHOLD_": str(16 * 2**20)}
    ) == {"beam_logits": False, "encoder_block": False, "ffn": False, "heap_kept": False}
    assert _probe_allocator(
        "session", str(path), env={"AUDIOTOTEXT_MMAP_THRESHOLD": str(3 * 2**20)}
    ) == {"beam_logits": False, "encoder_block": False, "ffn": True, "heap_kept": True}
    assert _probe_allocator(
        "session", str(path), env={"MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}
    ) == {"beam_logits": False, "encoder_block": True, "ffn": True, "heap_kept": False}


@pytest.mark.parametrize("value", ["abc", "-1", "2.5", str(64 * 2**20)])
def test_a_bad_mmap_threshold_setting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from audiototext._allocator import mmap_threshold_setting
    from audiototext.errors import ConfigError

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setenv("AUDIOTOTEXT_MMAP_THRESHOLD", value)
    with pytest.raises(ConfigError, match="AUDIOTOTEXT_MMAP_THRESHOLD must be a byte count"):
        mmap_threshold_setting()


def test_only_the_encoder_reuses_its_activations_from_an_arena(int8_model: WhisperModel) -> None:
    # glibc maps blocks of 1 MiB and more (tune_allocator): without the arena, every window
    # faulted the encoder's activations in again (bench/NOTES.md, round 11). The decoder's
    # shapes change every step: an arena would keep its largest buffers alive.
    assert _session_options(OrtConfig(memory_arena=True)).enable_cpu_mem_arena
    assert not _session_options(OrtConfig()).enable_cpu_mem_arena
    assert int8_model.encoder.raw.get_session_options().enable_cpu_mem_arena
    assert not int8_model.decoder.raw.get_session_options().enable_cpu_mem_arena
    assert not int8_model.encoder.raw.get_session_options().enable_mem_pattern


def test_file_transcription_sessions_do_not_spin(model_cache_root: Path) -> None:
    # A busy machine's spinning pool took the CPU the working threads needed (bench/NOTES.md,
    # realspeech); streaming keeps ONNX Runtime's default.
    from audiototext.inference.transcribe import Transcriber

    t = Transcriber.load("tiny.en", precision="int8", device="cpu", cache_root=model_cache_root)
    for session in (t.model.encoder, t.model.decoder):
        entry = session.raw.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning"
        )
        assert entry == "0"
    assert WhisperModel(t.model.path).config.spinning
