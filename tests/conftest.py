"""Shared fixtures: the corpus read in place, real loopback servers, SQLite and the real PostgreSQL."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.localserver import LocalServer
from store.db import open_database, scratch_postgres_database
from store.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("BRIEFCAST_CORPUS", ROOT.parent / "shared" / "corpus"))
PG_ADMIN_URL = os.environ.get("BRIEFCAST_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# CI sets this (.ci/run): a test skipped for want of ../shared (the corpus, the seeds) is then a
# failure, so a gate CI should run cannot pass by not running. A newcomer's `make test` without
# ../shared still skips, saying why.
REQUIRE_CORPUS = "BRIEFCAST_REQUIRE_CORPUS"
_NEEDS_SHARED = pytest.StashKey[bool]()
# Such a skip names what is missing: the corpus (the `corpus` fixture, BRIEFCAST_CORPUS) or a path
# under ../shared/ (the seeds).
_SHARED_MISSING = re.compile(r"corpus|[/\\]shared[/\\]", re.IGNORECASE)


def pytest_configure(config: pytest.Config) -> None:
    # Read here, before the autouse fixture below clears BRIEFCAST_* for each test.
    config.stash[_NEEDS_SHARED] = os.environ.get(REQUIRE_CORPUS, "").strip() not in ("", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and item.config.stash[_NEEDS_SHARED]) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _SHARED_MISSING.search(reason):
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_CORPUS}=1 (CI): this gate needs ../shared and was skipped: {reason}"


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch, tmp_path):
    # Tests must not pick up a developer's briefcast.toml or BRIEFCAST_* variables.
    monkeypatch.setenv("BRIEFCAST_CONFIG", str(tmp_path / "absent.toml"))
    for key in list(os.environ):
        if key.startswith("BRIEFCAST_") and key not in ("BRIEFCAST_CONFIG", "BRIEFCAST_CORPUS", "BRIEFCAST_TEST_PG", REQUIRE_CORPUS):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (expected ../shared/corpus beside the repo; set BRIEFCAST_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def samples_site() -> Path:
    return ROOT / "samples" / "site"


@pytest.fixture
def sample_server(samples_site) -> Iterator[LocalServer]:
    with LocalServer(samples_site) as server:
        yield server


_HEADER_LINE = re.compile(rb"Header:\s*([A-Za-z-]+):\s*([^\r\n]*?)\s*(?:-->|\r?\n)")


def corpus_headers(path: Path) -> dict[str, str]:
    """feedparser's test files state the HTTP header they must be served with (`Header:` lines)."""
    head = path.read_bytes()[:2048].replace(b"\x00", b"")
    return {m.group(1).decode(): m.group(2).decode("latin-1") for m in _HEADER_LINE.finditer(head)}


@pytest.fixture(scope="session")
def corpus_server(corpus) -> Iterator[LocalServer]:
    with LocalServer(corpus, render=False, extra_headers=corpus_headers) as server:
        yield server


def _postgres_database() -> Iterator[str]:
    """A fresh database on the real PostgreSQL for one test, dropped afterwards."""
    import sqlalchemy as sa

    try:
        with scratch_postgres_database(PG_ADMIN_URL, "briefcast_t") as url:
            yield url
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.orig}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'briefcast.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'briefcast.db'}"


def make_settings(tmp_path: Path, db_url: str, **overrides) -> Settings:
    values = dict(
        data_dir=tmp_path / "data",
        database_url=db_url,
        allow_private_addresses=True,  # tests serve on loopback
        total_timeout=15.0,
        read_timeout=10.0,
        connect_timeout=5.0,
    )
    return Settings(**(values | overrides))


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture
def sessions(settings):
    factory = open_database(settings.db_url)
    yield factory
    factory.kw["bind"].dispose()


@pytest.fixture(scope="session")
def real_sample_brief(tmp_path_factory):
    """The sample world's brief as `make run` makes it (the real default encoder, a fresh data
    directory), once per session: the brief-quality gate and the browser's first screen read it."""
    from benchmarks.brief_quality import sample_world_brief

    return sample_world_brief(tmp_path_factory.mktemp("make-run"))


@pytest.fixture(scope="session")
def retrieval_world(corpus, tmp_path_factory):
    """The retrieval set's index, built once a session with the real torch MiniLM: the retrieval
    gate scores it with torch queries, the ONNX tests with the int8 export's."""
    from embed.encoder import get_encoder
    from tests.retrieval_eval import build

    return build(corpus, tmp_path_factory.mktemp("retrieval"), get_encoder("minilm"))


@pytest.fixture
def smtp():
    """An SMTP server on loopback that records what it receives (tests/email_helpers.SmtpServer)."""
    from tests.email_helpers import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()
