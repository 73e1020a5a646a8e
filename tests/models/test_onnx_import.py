"""Whisper weights recovered from optimum / transformers.js style ONNX exports.

optimum-onnx 0.1.0 pins transformers < 4.58 and cannot import with transformers 5, so the
exports are made here the way optimum makes them: ``encoder_model.onnx`` (input_features →
last_hidden_state) and ``decoder_model.onnx`` (input_ids + encoder_hidden_states → logits +
present.*), exported from the transformers model with torch's TorchScript exporter (opset 14,
as optimum does for Whisper: layer norms decomposed, Linear weights folded into anonymous
``onnx::MatMul_*`` tensors) and with the dynamo exporter (opsets 18 and 23: ``val_*`` names,
a kept Transpose for the output projection, and at 23 fused ``Attention``/``Gelu`` ops). A
merged decoder is assembled like optimum's ``merge_decoders`` (an If over the decoder with and
without past, initializers deduplicated into the outer graph), and an fp16 copy is made with
onnxruntime's float16 converter.

The recovered fp32 weights must equal the safetensors bit for bit, and our converter run on
them must match transformers' logits within the parity tolerance (2e-4 relative).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from audiototext.errors import ConversionError, NotWhisperError
from audiototext.models.graph import build_decoder, build_encoder
from audiototext.models.metadata import ModelMetadata, read_source_metadata
from audiototext.models.onnx_import import load_onnx_export, pick_onnx_files

if TYPE_CHECKING:
    import torch
    import transformers
    from transformers import WhisperForConditionalGeneration
else:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

from models.conftest import make_random_whisper, rel_err

# The exporters warn about tracing and deprecations on every export; nothing to act on here.
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::torch.jit.TracerWarning"
)

ENC_TOL = 5e-4
LOGITS_TOL = 2e-4
TOKENS = np.array([[50257, 50362, 400, 318, 257, 1332, 13], [50257, 50362, 1212, 2420, 11, 995, 0]])
CONFIG_FILES = ("config.json", "generation_config.json", "tokenizer.json")


# --------------------------------------------------------------------------- pick_onnx_files

ONNX_COMMUNITY = [
    ".gitattributes",
    "README.md",
    "added_tokens.json",
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    *(
        f"onnx/{graph}{suffix}.onnx"
        for graph in (
            "encoder_model",
            "decoder_model",
            "decoder_model_merged",
            "decoder_with_past_model",
        )
        for suffix in ("", "_fp16", "_quantized", "_int8", "_uint8", "_q4", "_q4f16", "_bnb4")
    ),
]


def test_pick_prefers_fp32_plain_decoder_in_onnx_folder() -> None:
    assert pick_onnx_files(ONNX_COMMUNITY) == [
        "config.json",
        "tokenizer.json",
        "onnx/encoder_model.onnx",
        "onnx/decoder_model.onnx",
        "generation_config.json",
        "preprocessor_config.json",
    ]


def test_pick_merged_decoder_with_external_data() -> None:
    names = [
        "config.json",
        "tokenizer.json",
        "onnx/encoder_model.onnx",
        "onnx/encoder_model.onnx_data",
        "onnx/encoder_model_fp16.onnx",
        "onnx/encoder_model_fp16.onnx_data",
        "onnx/decoder_model_merged.onnx",
        "onnx/decoder_model_merged.onnx_data",
        "onnx/decoder_model_merged.onnx_data_1",
        "onnx/decoder_model_merged_q4.onnx",
    ]
    assert pick_onnx_files(names) == [
        "config.json",
        "tokenizer.json",
        "onnx/encoder_model.onnx",
        "onnx/encoder_model.onnx_data",
        "onnx/decoder_model_merged.onnx",
        "onnx/decoder_model_merged.onnx_data",
        "onnx/decoder_model_merged.onnx_data_1",
    ]


def test_pick_root_layout_and_fp16_fallback() -> None:
    root = ["config.json", "tokenizer.json", "encoder_model.onnx", "decoder_model_merged.onnx"]
    assert pick_onnx_files(root)[2:] == ["encoder_model.onnx", "decoder_model_merged.onnx"]
    fp16 = [n for n in ONNX_COMMUNITY if not n.endswith(("_model.onnx", "_merged.onnx"))]
    assert pick_onnx_files(fp16)[2:4] == [
        "onnx/encoder_model_fp16.onnx",
        "onnx/decoder_model_fp16.onnx",
    ]


def test_pick_refuses_quantised_only_with_past_only_and_non_onnx() -> None:
    quantised = [n for n in ONNX_COMMUNITY if not n.endswith(("_model.onnx", "_merged.onnx"))]
    quantised = [n for n in quantised if "_fp16" not in n]
    with pytest.raises(ConversionError, match="only quantised"):
        pick_onnx_files(quantised)
    with_past = ["config.json", "tokenizer.json", "encoder_model.onnx"]
    with pytest.raises(ConversionError, match=r"decoder_with_past_model\.onnx"):
        pick_onnx_files([*with_past, "decoder_with_past_model.onnx"])
    with pytest.raises(NotWhisperError):
        pick_onnx_files(["config.json", "tokenizer.json", "model.safetensors"])
    with pytest.raises(NotWhisperError):
        pick_onnx_files(["config.json", "onnx/model.onnx", "onnx/model_quantized.onnx"])
    with pytest.raises(ConversionError, match=r"tokenizer\.json"):
        pick_onnx_files(["config.json", "onnx/encoder_model.onnx", "onnx/decoder_model.onnx"])


# --------------------------------------------------------------------------- exports


class _Decoder(torch.nn.Module):
    """optimum's decoder_model: input_ids + encoder_hidden_states → logits, present.*."""

    def __init__(self, model: WhisperForConditionalGeneration) -> None:
        super().__init__()
        self.m = model

    def forward(
        self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        out = self.m(
            decoder_input_ids=input_ids,
            encoder_outputs=(encoder_hidden_states,),
            use_cache=True,
        )
        cache = out.past_key_values
        res = [out.logits]
        for i in range(len(self.m.model.decoder.layers)):
            own = cache.self_attention_cache.layers[i]
            res += [own.keys, own.values]
        return tuple(res)


class _DecoderWithPast(torch.nn.Module):
    """optimum's decoder_with_past_model: cross-attention K/V come in as past inputs."""

    def __init__(self, model: WhisperForConditionalGeneration) -> None:
        super().__init__()
        self.m = model

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        n = len(self.m.model.decoder.layers)
        own, cross = DynamicCache(), DynamicCache()
        for i in range(n):
            own.update(past[4 * i], past[4 * i + 1], i)
            cross.update(past[4 * i + 2], past[4 * i + 3], i)
        cache = EncoderDecoderCache(own, cross)
        for i in range(n):
            cache.is_updated[i] = True
        d = self.m.config.d_model
        out = self.m(
            decoder_input_ids=input_ids,
            encoder_outputs=(torch.zeros(1, 1500, d),),
            past_key_values=cache,
            use_cache=True,
        )
        res = [out.logits]
        for i in range(n):
            layer = out.past_key_values.self_attention_cache.layers[i]
            res += [layer.keys, layer.values]
        return tuple(res)


def _present_names(n: int) -> list[str]:
    return [f"present.{i}.decoder.{k}" for i in range(n) for k in ("key", "value")]


def _export(model: WhisperForConditionalGeneration, out: Path, *, dynamo: bool, opset: int) -> None:
    cfg = model.config
    n = cfg.decoder_layers
    kw: dict[str, Any] = {"dynamo": dynamo, "opset_version": opset}
    if not dynamo:
        kw["do_constant_folding"] = True  # what optimum does, and what renames the weights
    out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model.get_encoder(),
        (torch.randn(1, cfg.num_mel_bins, 3000),),
        str(out / "encoder_model.onnx"),
        input_names=["input_features"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_features": {0: "batch"}, "last_hidden_state": {0: "batch"}},
        **kw,
    )
    torch.onnx.export(
        _Decoder(model).eval(),
        (torch.tensor([[50257, 50362, 400]]), torch.randn(1, 1500, cfg.d_model)),
        str(out / "decoder_model.onnx"),
        input_names=["input_ids", "encoder_hidden_states"],
        output_names=["logits", *_present_names(n)],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "encoder_hidden_states": {0: "batch"},
            "logits": {0: "batch", 1: "tokens"},
        },
        **kw,
    )


def _export_with_past(model: WhisperForConditionalGeneration, path: Path) -> None:
    cfg = model.config
    n, heads = cfg.decoder_layers, cfg.decoder_attention_heads
    hd = cfg.d_model // heads
    past, names = [], []
    for i in range(n):
        for side, length in (("decoder", 3), ("encoder", 1500)):
            for k in ("key", "value"):
                past.append(torch.randn(1, heads, length, hd))
                names.append(f"past_key_values.{i}.{side}.{k}")
    torch.onnx.export(
        _DecoderWithPast(model).eval(),
        (torch.tensor([[400]]), *past),
        str(path),
        input_names=["input_ids", *names],
        output_names=["logits", *_present_names(n)],
        dynamo=False,
        opset_version=14,
        do_constant_folding=True,
    )


def _merge(no_past: onnx.ModelProto, with_past: onnx.ModelProto) -> onnx.ModelProto:
    """An If over both decoders with shared initializers, as optimum's merge_decoders does."""
    shared: dict[bytes, str] = {}
    outer: list[onnx.TensorProto] = []

    def lift(graph: onnx.GraphProto, tag: str) -> onnx.GraphProto:
        rename: dict[str, str] = {}
        for t in graph.initializer:
            key = hashlib.sha256(
                t.SerializeToString(deterministic=True).replace(t.name.encode(), b"")
            ).digest()
            if key not in shared:
                shared[key] = f"{tag}{t.name}"
                copy = onnx.TensorProto()
                copy.CopyFrom(t)
                copy.name = shared[key]
                outer.append(copy)
            rename[t.name] = shared[key]
        body = onnx.GraphProto()
        body.CopyFrom(graph)
        del body.initializer[:]
        del body.input[:]  # a branch reads the If's outer scope instead
        for node in body.node:
            for j, name in enumerate(node.input):
                node.input[j] = rename.get(name, name)
        keep = {o.name for o in with_past.graph.output}
        outputs = [o for o in body.output if o.name in keep]
        del body.output[:]
        body.output.extend(outputs)
        return body

    else_branch = lift(no_past.graph, "")
    then_branch = lift(with_past.graph, "past_")
    inputs = {i.name: i for i in [*no_past.graph.input, *with_past.graph.input]}
    flag = onnx.helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1])
    node = onnx.helper.make_node(
        "If",
        ["use_cache_branch"],
        [o.name for o in then_branch.output],
        then_branch=then_branch,
        else_branch=else_branch,
    )
    graph = onnx.helper.make_graph(
        [node],
        "merged_decoder",
        [*inputs.values(), flag],
        list(then_branch.output),
        initializer=outer,
    )
    return onnx.helper.make_model(graph, opset_imports=list(no_past.opset_import))


def _to_fp16(path: Path, dest: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(dest))


def _copy_configs(src: Path, dest: Path) -> None:
    for name in CONFIG_FILES:
        shutil.copyfile(src / name, dest / name)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, tiny_en_source: Path) -> Path:
    return make_random_whisper(
        tmp_path_factory.mktemp("onnx-import-src"), tiny_en_source / "tokenizer.json", seed=7
    )


@pytest.fixture(scope="module")
def torch_model(source: Path) -> WhisperForConditionalGeneration:
    model = transformers.WhisperForConditionalGeneration.from_pretrained(source)
    model.eval()  # type: ignore[no-untyped-call]  # unannotated in transformers; returns model
    return model


@pytest.fixture(scope="module")
def reference(source: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k.removeprefix("model."): v for k, v in load_file(source / "model.safetensors").items()}


def _style_torchscript14(src: Path, model: WhisperForConditionalGeneration, repo: Path) -> None:
    _export(model, repo / "onnx", dynamo=False, opset=14)
    _copy_configs(src, repo)


def _style_torchscript17(src: Path, model: WhisperForConditionalGeneration, repo: Path) -> None:
    # Opset 17 keeps layer norms as LayerNormalization nodes; the repo root layout.
    _export(model, repo, dynamo=False, opset=17)
    _copy_configs(src, repo)


def _style_dynamo18(src: Path, model: WhisperForConditionalGeneration, repo: Path) -> None:
    pytest.importorskip("onnxscript")  # the dynamo exporter's ONNX backend
    _export(model, repo / "onnx", dynamo=True, opset=18)
    _copy_configs(src, repo)


def _style_dynamo23(src: Path, model: WhisperForConditionalGeneration, repo: Path) -> None:
    pytest.importorskip("onnxscript")  # the dynamo exporter's ONNX backend
    _export(model, repo / "onnx", dynamo=True, opset=23)
    _copy_configs(src, repo)


def _style_merged_external(src: Path, model: WhisperForConditionalGeneration, repo: Path) -> None:
    """transformers.js large-model layout: merged decoder only, weights in *.onnx_data."""
    work = repo.parent / (repo.name + "-work")
    _export(model, work, dynamo=False, opset=14)
    _export_with_past(model, work / "decoder_with_past_model.onnx")
    merged = _merge(
        onnx.load(str(work / "decoder_model.onnx")),
        onnx.load(str(work / "decoder_with_past_model.onnx")),
    )
    onnx.checker.check_model(merged)
    (repo / "onnx").mkdir(parents=True)
    for name, m in (
        ("encoder_model.onnx", onnx.load(str(work / "encoder_model.onnx"))),
        ("decoder_model_merged.onnx", merged),
    ):
        onnx.save_model(
            m,
            str(repo / "onnx" / name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=name + "_data",
            size_threshold=0,
        )
    shutil.copyfile(
        work / "decoder_with_past_model.onnx", repo / "onnx/decoder_with_past_model.onnx"
    )
    _copy_configs(src, repo)


def _style_fp16(src: Path, model: WhisperForConditionalGeneration, repo: Path) -> None:
    work = repo.parent / (repo.name + "-work")
    _export(model, work, dynamo=False, opset=14)
    (repo / "onnx").mkdir(parents=True)
    for name in ("encoder_model", "decoder_model"):
        _to_fp16(work / f"{name}.onnx", repo / "onnx" / f"{name}_fp16.onnx")
    _copy_configs(src, repo)


STYLES: dict[str, Callable[[Path, WhisperForConditionalGeneration, Path], None]] = {
    "torchscript-opset14": _style_torchscript14,
    "torchscript-opset17-root": _style_torchscript17,
    "dynamo-opset18": _style_dynamo18,
    "dynamo-opset23": _style_dynamo23,
    "merged-external-data": _style_merged_external,
    "fp16": _style_fp16,
}


@pytest.fixture(scope="module")
def exports(
    tmp_path_factory: pytest.TempPathFactory,
    source: Path,
    torch_model: WhisperForConditionalGeneration,
) -> Callable[[str], Path]:
    made: dict[str, Path] = {}

    def get(style: str) -> Path:
        if style not in made:
            repo = tmp_path_factory.mktemp("onnx-export") / style
            STYLES[style](source, torch_model, repo)
            made[style] = repo
        return made[style]

    return get


# --------------------------------------------------------------------------- parity


def _run_ours(out: Path, meta: ModelMetadata, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    enc = ort.InferenceSession(str(out / "encoder.onnx"), so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in enc.get_outputs()]
    e = dict(zip(names, enc.run(None, {"input_features": feats}), strict=True))
    d = meta.dims
    b, t = TOKENS.shape
    hd = d.d_model // d.decoder_heads
    feed = {
        "input_ids": TOKENS.astype(np.int64),
        "position_ids": np.tile(np.arange(t), (b, 1)),
        "attention_mask": np.ones((b, t), np.int64),
        "logits_index": np.tile(np.arange(t), (b, 1)),
    }
    for i in range(d.decoder_layers):
        for kind in ("k", "v"):
            feed[f"past_{kind}_{i}"] = np.zeros((b, d.decoder_heads, 0, hd), np.float32)
            feed[f"cross_{kind}_{i}"] = e[f"cross_{kind}_{i}"]
    (logits,) = dec.run(["logits"], feed)
    return e["last_hidden_state"], logits


@pytest.fixture(scope="module")
def torch_outputs(
    torch_model: WhisperForConditionalGeneration,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    feats = (rng.standard_normal((2, 80, 3000)) * 0.4 - 0.3).astype(np.float32)
    with torch.no_grad():
        ref = torch_model(
            input_features=torch.from_numpy(feats), decoder_input_ids=torch.from_numpy(TOKENS)
        )
    return feats, ref.encoder_last_hidden_state.numpy(), ref.logits.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("style", list(STYLES))
def test_recovered_weights_rebuild_the_model(
    style: str,
    exports: Callable[[str], Path],
    reference: dict[str, np.ndarray],
    torch_outputs: tuple[np.ndarray, np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    repo = exports(style)
    ckpt = load_onnx_export(repo)
    assert set(ckpt.tensors) == set(reference)
    for name, want in reference.items():
        got = ckpt.tensors[name]
        assert got.dtype == np.float32 and got.shape == want.shape, name
        if style == "fp16":
            # onnxruntime's converter also flushes |x| < 1e-7 to ±1e-7.
            np.testing.assert_allclose(
                got, want.astype(np.float16).astype(np.float32), rtol=0, atol=1e-7, err_msg=name
            )
        else:
            assert np.array_equal(got, want), name
    assert (ckpt.dims.encoder_heads, ckpt.dims.decoder_heads) == (4, 4)

    meta = read_source_metadata(repo, ckpt.dims)
    onnx.save(build_encoder(ckpt), str(tmp_path / "encoder.onnx"))
    onnx.save(build_decoder(ckpt, meta.alignment_heads), str(tmp_path / "decoder.onnx"))
    feats, hidden, logits = torch_outputs
    ours_hidden, ours_logits = _run_ours(tmp_path, meta, feats)
    enc_err, logits_err = rel_err(ours_hidden, hidden), rel_err(ours_logits, logits)
    print(f"{style}: encoder rel err {enc_err:.2e}, logits rel err {logits_err:.2e}")
    if style == "fp16":
        # Rounded weights: the model itself changed, so only closeness is expected.
        assert enc_err < 5e-3 and logits_err < 5e-3, (enc_err, logits_err)
    else:
        assert enc_err < ENC_TOL, enc_err
        assert logits_err < LOGITS_TOL, logits_err
        assert (ours_logits.argmax(-1) == logits.argmax(-1)).all()


# --------------------------------------------------------------------------- refusals


@pytest.mark.slow
def test_refuses_quantised_graphs_and_other_models(
    exports: Callable[[str], Path], tmp_path: Path
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    good = exports("torchscript-opset14")
    repo = tmp_path / "repo"
    shutil.copytree(good, repo)
    # A quantised file saved under the fp32 name must still be refused, not misread.
    quantize_dynamic(
        good / "onnx/encoder_model.onnx",
        repo / "onnx/encoder_model.onnx",
        weight_type=QuantType.QInt8,
    )
    with pytest.raises(ConversionError, match="quantised"):
        load_onnx_export(repo)

    shutil.rmtree(repo)
    shutil.copytree(good, repo)
    config = (repo / "config.json").read_text().replace('"whisper"', '"bart"')
    (repo / "config.json").write_text(config)
    with pytest.raises(NotWhisperError):
        load_onnx_export(repo)


@pytest.mark.slow
def test_decoder_with_past_alone_is_refused(exports: Callable[[str], Path], tmp_path: Path) -> None:
    merged = exports("merged-external-data")
    repo = tmp_path / "repo"
    shutil.copytree(merged, repo)
    (repo / "onnx/decoder_model_merged.onnx").unlink()
    # Posing as a full decoder, it is caught by its missing cross-attention projections.
    (repo / "onnx/decoder_with_past_model.onnx").rename(repo / "onnx/decoder_model.onnx")
    with pytest.raises(ConversionError, match="k_proj"):
        load_onnx_export(repo)


def test_pull_of_an_onnx_only_repo_through_the_hub(
    exports: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An optimum-layout repo (no safetensors, no model.bin) is pulled as an ONNX source."""
    from audiototext.models.cache import ModelCache
    from audiototext.models.manager import pull
    from support.hf_server import FakeHub

    repo = exports("torchscript-opset14")
    files: dict[str, bytes | Path] = {
        str(p.relative_to(repo)): p for p in repo.rglob("*") if p.is_file()
    }
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        sha = hub.add_repo("lab/whisper-onnx", files)
        result = pull("lab/whisper-onnx", precision="fp32", cache=ModelCache(tmp_path / "c"))
    src = result.entry.source
    assert (src["kind"], src["commit"]) == ("onnx", sha)
    assert any("no safetensors" in a for a in result.attempts)
    assert result.entry.manifest["validation"]["fp32_vs_reference"]["logits_rel_err"] < 1e-3
