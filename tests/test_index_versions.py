"""Index versions change only when the index does: a no-op `embed` (the beat runs one a minute)
writes nothing and readers keep what they hold; `reindex` builds the new version beside the live
one and switches only when it is complete, so a real `briefcast reindex` killed with SIGKILL
mid-way leaves a running `briefcast serve` answering from the old version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from embed.encoder import FakeEncoder
from embed.index import POINTER, IndexReader, IndexStore
from embed.pipeline import embed_pending
from embed.search import search
from store import repo
from store.db import open_database
from store.entry import Entry
from store.models import Passage
from tests.conftest import _postgres_database, make_settings
from tests.test_api import build_world, free_port
from tests.test_search import world  # noqa: F401  (the fixture: 4 items embedded, SQLite and PostgreSQL)


def _files(directory: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under the index directory: (size, mtime_ns, inode)."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(directory))] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def test_a_no_op_embed_writes_nothing_and_readers_keep_their_version(world, sessions):  # noqa: F811
    ctx, store, encoder, _ = world
    reader = IndexReader(store)
    held = reader.snapshot()
    before, meta = _files(store.dir), store.meta()
    for _ in range(3):
        report = embed_pending(sessions, encoder, store)
        assert report.passages_embedded == report.passages_removed == report.items_split == 0
        assert report.index_count == meta.count
    assert store.meta() == meta
    assert _files(store.dir) == before  # not one byte, not one new link or working copy
    assert reader.snapshot() is held  # a reader has nothing to reload


def test_an_embed_with_work_still_commits_a_new_version(world, sessions):  # noqa: F811
    ctx, store, encoder, _ = world
    meta = store.meta()
    with sessions() as session, session.begin():
        source = repo.list_sources(session)[0]
        repo.upsert_entries(session, source, [Entry(title="Walrus choir", text="A walrus choir sings sea shanties.",
                                                    guid="walrus", url="https://news.example/walrus")])
    report = embed_pending(sessions, encoder, store)
    assert report.passages_embedded >= 1 and store.meta().version != meta.version
    assert store.meta().count == meta.count + report.passages_embedded


def test_reindex_keeps_the_live_version_until_the_new_one_is_complete(world, sessions):  # noqa: F811
    ctx, store, encoder, _ = world
    meta = store.meta()

    class Failing(type(encoder)):
        calls = 0

        def embed_batch(self, texts):
            Failing.calls += 1
            if Failing.calls == 2:
                raise RuntimeError("the encoder died mid-way")
            return super().embed_batch(texts)

    with pytest.raises(RuntimeError, match="mid-way"):
        embed_pending(sessions, Failing(), store, rebuild=True, batch=2)
    assert store.meta() == meta and store.load().count == meta.count
    with sessions() as session:  # the database still says every passage is in the live version
        assert session.scalar(select(func.count()).where(Passage.embedded_model == encoder.model_id)) == meta.count
    assert embed_pending(sessions, encoder, store).passages_embedded == 0
    report = embed_pending(sessions, encoder, store, rebuild=True)
    assert report.rebuilt and report.passages_embedded == meta.count
    assert store.meta().version != meta.version and store.meta().count == meta.count


# --- a real `briefcast reindex`, killed, and a real `briefcast serve` --------------------------------

# The real CLI in its own process; its encoder is the fake one (same model id as the server's),
# registered under another name through the encoder registry, which notes each batch in a file
# and takes its time, so the test knows when the rebuild is half done.
SLOW_REINDEX = textwrap.dedent("""
    import sys, time
    from embed.encoder import FakeEncoder, register

    PROGRESS = sys.argv[1]

    @register("slow-fake")
    class SlowFake(FakeEncoder):
        def embed_batch(self, texts):
            with open(PROGRESS, "a") as progress:
                progress.write(f"{len(texts)}\\n")
            time.sleep(0.2)
            return super().embed_batch(texts)

    from api.cli import main
    sys.argv = ["briefcast", "reindex"]
    main()
""")


def _env(settings, tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
    return env | {"BRIEFCAST_DATA_DIR": str(settings.data_dir), "BRIEFCAST_DATABASE_URL": settings.db_url,
                  "BRIEFCAST_ENCODER": "fake", "BRIEFCAST_CONFIG": str(tmp_path / "none.toml")} | extra


def _search(base: str, key: str, **params) -> list[int]:
    answer = httpx.get(base + "/search", params={"q": "export controls accelerators", **params},
                       headers={"X-API-Key": key}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [hit["item_id"] for hit in answer.json()["results"]]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_reindex_killed_mid_way_leaves_search_on_the_old_version(tmp_path, backend, request):
    db_url = f"sqlite:///{tmp_path / 'api.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    settings = make_settings(tmp_path, db_url, encoder="fake", embed_batch=4)
    key = build_world(settings)
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():  # enough passages for ~10 batches of 4
        source = repo.list_sources(session)[0]
        repo.upsert_entries(session, source, [
            Entry(title=f"Filler {n}", text=f"Filler story number {n} about shipping lanes and harbour cranes.",
                  guid=f"filler-{n}", url=f"https://news.example/filler-{n}") for n in range(36)])
    embed_pending(sessions, FakeEncoder(), IndexStore(settings.index_dir))
    with sessions() as session:
        passages = session.scalar(select(func.count()).select_from(Passage))
    sessions.kw["bind"].dispose()
    index_dir = settings.index_dir
    old = IndexStore(index_dir).meta()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "briefcast"), "serve", "--port", str(port)],
                              env=_env(settings, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        answer = {mode: _search(base, key, mode=mode) for mode in ("hybrid", "keyword", "vector")}
        assert all(answer.values())

        progress = tmp_path / "progress.txt"
        script = tmp_path / "slow_reindex.py"
        script.write_text(SLOW_REINDEX)
        reindex = subprocess.Popen([sys.executable, str(script), str(progress)],
                                   env=_env(settings, tmp_path, BRIEFCAST_ENCODER="slow-fake", BRIEFCAST_EMBED_BATCH="4"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while (not progress.exists() or len(progress.read_text().splitlines()) < 3) and time.monotonic() < deadline:
            assert reindex.poll() is None, reindex.stderr.read().decode()
            time.sleep(0.05)
        batches = len(progress.read_text().splitlines())
        assert 3 <= batches < passages // 4, (batches, passages)  # mid-way
        reindex.send_signal(signal.SIGKILL)
        reindex.wait(timeout=10)
        assert reindex.returncode == -signal.SIGKILL

        for mode, items in answer.items():  # before: 200 with no results, the pointer deleted
            assert _search(base, key, mode=mode) == items, mode
        assert IndexStore(index_dir).meta() == old  # the live version never changed

        done = subprocess.run([str(Path(sys.executable).parent / "briefcast"), "reindex"],
                              env=_env(settings, tmp_path), capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        new = IndexStore(index_dir).meta()
        assert new.version != old.version and new.count == old.count == passages
        for mode, items in answer.items():
            assert _search(base, key, mode=mode) == items, mode
        left = {p.name for p in index_dir.iterdir()}
        assert not any(name.endswith(".tmp") for name in left), left  # the killed run's leftovers are gone
        assert (index_dir / POINTER).exists()
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def pg_url():
    yield from _postgres_database()


def test_a_lost_index_directory_is_rebuilt_not_left_empty(world, sessions):  # noqa: F811
    """The database marks passages as embedded; with the index directory gone those marks name
    vectors nothing holds, and an incremental embed (pending passages only) would commit an empty
    index. The next embed rebuilds instead."""
    import shutil

    ctx, store, encoder, _ = world
    count = store.meta().count
    shutil.rmtree(store.dir)
    report = embed_pending(sessions, encoder, IndexStore(store.dir))
    assert report.rebuilt and report.passages_embedded == count == IndexStore(store.dir).meta().count
    assert search(ctx, "export controls", k=3)
