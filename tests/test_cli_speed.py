"""`briefcast search` as a user pays for it: what the command line imports, which encoder encodes a
query, and with how many threads. No timed assertions (machines are noisy): the timings are
benchmarks/cli_search.py's. The ONNX query encoder itself is tested in tests/test_onnx_encoder.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from embed.encoder import EncoderError, FakeEncoder
from embed.index import IndexMismatchError, IndexReader, IndexStore
from embed.pipeline import embed_pending
from embed.runtime import make_query_encoder
from embed.search import SearchContext, search
from store.db import open_database
from tests.conftest import make_settings
from tests.test_search import DOCS, NOW

ROOT = Path(__file__).resolve().parents[1]
# What a search never needs: the model libraries (only when the query encoder is torch's), the
# ingest and digest stages and what they pull in.
NOT_FOR_SEARCH = {"torch", "transformers", "sentence_transformers", "ingest", "digest", "trafilatura",
                  "feedparser", "httpx", "spacy", "celery", "uvicorn", "fastapi"}

# The real command line in a new process; on exit it names every top-level module it loaded.
CLI = textwrap.dedent("""
    import atexit, json, sys

    @atexit.register
    def _loaded():
        print("LOADED " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)

    from api.cli import main
    sys.argv = ["briefcast", *sys.argv[1:]]
    main()
""")


def briefcast(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> tuple[subprocess.CompletedProcess, set[str]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")} | (env or {})
    done = subprocess.run([sys.executable, "-c", CLI, *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=timeout)
    lines = [line for line in done.stderr.splitlines() if line.startswith("LOADED ")]
    assert lines, done.stderr[-2000:]
    return done, set(json.loads(lines[-1].removeprefix("LOADED ")))


@pytest.fixture
def fake_world(tmp_path):
    return make_fake_world(tmp_path)


def make_fake_world(tmp_path: Path):
    """A small SQLite world embedded with the fake encoder, and the environment that reaches it."""
    from store import repo
    from store.entry import Entry

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'cli.db'}", encoder="fake")
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        news, _ = repo.add_source(session, "https://news.example/feed", title="News")
        repo.upsert_entries(session, news, [Entry(title=title, text=body, guid=key, url=f"https://news.example/{key}",
                                                   language="en", published=NOW) for key, (title, body) in DOCS.items()])
    embed_pending(sessions, FakeEncoder(), IndexStore(settings.index_dir))
    sessions.kw["bind"].dispose()
    env = {"BRIEFCAST_DATA_DIR": str(settings.data_dir), "BRIEFCAST_DATABASE_URL": settings.db_url,
           "BRIEFCAST_ENCODER": "fake", "BRIEFCAST_CONFIG": str(tmp_path / "none.toml")}
    return settings, env


def test_help_loads_no_command_dependencies(tmp_path):
    done, loaded = briefcast("--help", env={"BRIEFCAST_CONFIG": str(tmp_path / "none.toml")})
    assert done.returncode == 0, done.stderr[-2000:]
    for command in ("search", "fetch", "embed", "reindex", "run", "digest", "explain", "sources", "items",
                    "subscribers", "worker", "beat", "transcribe", "serve", "apikey", "samples", "slack"):
        assert command in done.stdout, command
    assert not loaded & (NOT_FOR_SEARCH | {"sqlalchemy", "alembic", "numpy", "faiss", "embed", "store"})


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_search_loads_only_what_search_needs(fake_world, mode):
    _, env = fake_world
    done, loaded = briefcast("search", "export controls on accelerators", "--k", "2", "--mode", mode, "--json",
                             env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    hits = json.loads(done.stdout)
    assert hits and hits[0]["title"] == DOCS["chips"][0]
    assert not loaded & NOT_FOR_SEARCH, loaded & NOT_FOR_SEARCH


def test_the_sources_help_states_ingests_weight_limit():
    from api.commands.sources import MAX_WEIGHT
    from ingest.sources import MAX_WEIGHT as INGEST_MAX_WEIGHT

    assert MAX_WEIGHT == INGEST_MAX_WEIGHT


# --- which encoder may query an index -----------------------------------------------------------


class OtherModel(FakeEncoder):
    """Same dimension, same vectors even, but another model by its id: it may not query."""

    def __init__(self) -> None:
        super().__init__()
        self.model_id = "someone/else-384"


class DeclaredQueryEncoder(OtherModel):
    """Another build that declares itself a query encoder for the fake model's index."""

    query_equivalents = frozenset({"fake-hash-384"})


def _fake_context(fake_world, encoder) -> SearchContext:
    settings, _ = fake_world
    return SearchContext(sessions=open_database(settings.db_url), reader=IndexReader(IndexStore(settings.index_dir)),
                         encoder_factory=lambda: encoder)


def test_an_encoder_of_another_model_may_not_query_the_index(fake_world):
    ctx = _fake_context(fake_world, OtherModel())
    with pytest.raises(IndexMismatchError, match="index built with fake-hash-384, search uses someone/else-384.*reindex"):
        search(ctx, "export controls", mode="vector")
    assert search(ctx, "export controls", mode="keyword")  # keywords need no encoder
    assert not OtherModel().can_query("fake-hash-384") and FakeEncoder().can_query("fake-hash-384")


def test_a_declared_query_encoder_may_and_ranks_as_the_index_model(fake_world):
    declared = search(_fake_context(fake_world, DeclaredQueryEncoder()), "export controls", mode="hybrid")
    same = search(_fake_context(fake_world, FakeEncoder()), "export controls", mode="hybrid")
    assert [h.passage_id for h in declared] == [h.passage_id for h in same] and declared
    assert not DeclaredQueryEncoder().can_query("sentence-transformers/all-MiniLM-L6-v2")  # only what it names


# --- which encoder the settings build for queries -------------------------------------------------


def test_query_encoder_auto_applies_only_to_the_default_encoder(tmp_path):
    settings = make_settings(tmp_path, "sqlite://", encoder="fake", query_encoder="auto")
    assert isinstance(make_query_encoder(settings), FakeEncoder)  # whatever ONNX export exists


def test_query_encoder_onnx_without_the_export_says_make_onnx(tmp_path):
    settings = make_settings(tmp_path, "sqlite://", query_encoder="onnx", query_encoder_path=str(tmp_path / "nowhere"))
    with pytest.raises(EncoderError, match="make onnx"):
        make_query_encoder(settings)


def test_query_threads_is_a_count_of_threads(tmp_path):
    from pydantic import ValidationError

    assert make_settings(tmp_path, "sqlite://").query_threads == 1
    with pytest.raises(ValidationError):
        make_settings(tmp_path, "sqlite://", query_threads=-1)


@pytest.mark.slow
def test_torch_query_encoder_takes_its_threads_from_the_settings(tmp_path):
    # Torch's own default is one thread per core, so the setting asks for one more than that: a
    # value only the setting can have put there. The ONNX export named here does not exist, so
    # `auto` falls back to the torch encoder and says why.
    script = textwrap.dedent(f"""
        import json, logging, os, sys
        import torch
        logging.basicConfig(level=logging.WARNING)
        default = torch.get_num_threads()
        from embed.runtime import make_query_encoder
        from store.settings import Settings
        settings = Settings(data_dir={str(tmp_path / "data")!r}, query_encoder="auto",
                            query_encoder_path={str(tmp_path / "no-export")!r}, query_threads=default + 1)
        encoder = make_query_encoder(settings)
        assert encoder.embed_batch(["a query"]).shape == (1, 384)
        print(json.dumps([type(encoder).__name__, default, torch.get_num_threads()]))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    kind, default, threads = json.loads(done.stdout.strip().splitlines()[-1])
    assert kind == "SentenceTransformerEncoder" and threads == default + 1
    assert "no ONNX model at" in done.stderr and "using the minilm encoder instead" in done.stderr
