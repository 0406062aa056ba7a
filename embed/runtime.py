"""Build the encoder, index store and search context from settings (at the edge, once)."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from embed.encoder import MINILM_MODEL_ID, Encoder, EncoderError, get_encoder
from embed.index import IndexReader, IndexStore
from embed.onnx_encoder import default_path, find_model
from embed.search import SearchContext
from store.settings import Settings

log = logging.getLogger(__name__)


def make_encoder(settings: Settings) -> Encoder:
    options: dict = {}
    if settings.encoder in ("minilm", "sentence-transformers", "onnx"):
        options["threads"] = settings.encoder_threads
    if settings.encoder == "sentence-transformers":
        options["path"] = settings.encoder_path
    if settings.encoder == "onnx":
        options["path"] = settings.encoder_path or str(find_model(settings.data_dir) or default_path(settings.data_dir))
    return get_encoder(settings.encoder, **{k: v for k, v in options.items() if v is not None})


def make_story_encoder(settings: Settings) -> Encoder | None:
    """The encoder for pairs of items the passage encoder does not cover (digest.cluster), or None
    (`story_encoder = "passages"`). USE-m3 loads only when a pair first needs it."""
    name = settings.story_encoder
    if name == "passages":
        return None
    if name == "usem3":
        from embed.multilingual import USEM3_MODEL_ID, LazyEncoder, UseM3Encoder

        return LazyEncoder(lambda: get_encoder("usem3", threads=settings.encoder_threads), USEM3_MODEL_ID,
                           UseM3Encoder.dim)
    return get_encoder(name)


def make_multilingual_encoder(settings: Settings, threads: int | None = None) -> Encoder | None:
    """The second index's encoder (passages in other languages, leads, the queries against them),
    loaded on first use; None when `multilingual_encoder = "none"`. USE-m3 through the same
    registered loader the story encoder uses."""
    name = settings.multilingual_encoder
    if name == "none":
        return None
    if name == "usem3":
        from embed.multilingual import USEM3_MODEL_ID, LazyEncoder, UseM3Encoder

        return LazyEncoder(lambda: get_encoder("usem3", threads=threads), USEM3_MODEL_ID, UseM3Encoder.dim)
    return get_encoder(name)


def make_multilingual_embedding(settings: Settings):
    """The embed stage's second half (embed/multilingual_index.py), or None when it is off."""
    from embed.multilingual_index import MultilingualEmbedding

    encoder = make_multilingual_encoder(settings, threads=settings.encoder_threads)
    if encoder is None:
        return None
    if uses_database_index(settings):
        from embed.multilingual_index import DatabaseMultilingualEmbedding

        return DatabaseMultilingualEmbedding(encoder)
    return MultilingualEmbedding(encoder, settings.index_dir)


def _role_mirrors(settings: Settings, sessions: sessionmaker[Session], serving: bool) -> dict:
    """index_source=database: a mirror of each role's vectors (no keyword half: keywords are the
    passage index's)."""
    from embed.mirror import MirrorReader, VectorMirror
    from embed.multilingual_index import LEADS, OTHER, role_model_id

    encoder = make_multilingual_encoder(settings)  # lazy: only its id and dimension are read here
    return {name: MirrorReader(VectorMirror(sessions, role_model_id(encoder.model_id, name), encoder.dim,
                                            nprobe=settings.nprobe, threads=1 if serving else None),
                               lambda: None, sync_every=settings.mirror_sync_seconds,
                               check_every=settings.mirror_check_seconds)
            for name in (OTHER, LEADS)}


def make_multilingual_search(settings: Settings, serving: bool = False, sessions: sessionmaker[Session] | None = None):
    from embed.multilingual_index import DEFAULT_FLOOR, MultilingualSearch, stores

    if settings.multilingual_encoder == "none":
        return None
    if uses_database_index(settings) and sessions is not None:
        readers = _role_mirrors(settings, sessions, serving)
    else:
        readers = {name: IndexReader(store, nprobe=settings.nprobe, threads=1 if serving else None)
                   for name, store in stores(settings.index_dir).items()}
    floor = settings.multilingual_floor if settings.multilingual_floor is not None else DEFAULT_FLOOR
    return MultilingualSearch(readers, lambda: make_multilingual_encoder(settings, threads=settings.query_threads or None),
                              floor)


STORY_MODEL_FILE = "story-encoder.txt"  # in data_dir: the story encoder the last clustering used
PASSAGES_STORY_MODEL = "passages"  # no story encoder: the passage vectors compare every pair


def story_model_id(settings: Settings) -> str:
    """The model id `settings.story_encoder` names, without loading it."""
    encoder = make_story_encoder(settings)
    return encoder.model_id if encoder is not None else PASSAGES_STORY_MODEL


def recorded_story_model(settings: Settings) -> str | None:
    path = settings.data_dir / STORY_MODEL_FILE
    return path.read_text(encoding="utf-8").strip() or None if path.exists() else None


def record_story_model(settings: Settings, model_id: str) -> None:
    if recorded_story_model(settings) != model_id:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        (settings.data_dir / STORY_MODEL_FILE).write_text(model_id + "\n", encoding="utf-8")


def story_model_change(settings: Settings) -> tuple[str, str] | None:
    """(the story encoder the last clustering used, the one settings name) when they differ."""
    before, now = recorded_story_model(settings), story_model_id(settings)
    return (before, now) if before is not None and before != now else None


def onnx_query_model(settings: Settings) -> Path | None:
    """The int8 ONNX export a query may be encoded with, if there is one."""
    if settings.query_encoder_path:
        return Path(settings.query_encoder_path)  # named: a missing one is said, not skipped
    return find_model(settings.data_dir)


def make_query_encoder(settings: Settings) -> Encoder:
    """The encoder for search queries, with `query_threads` threads.

    With `query_encoder=auto` and the default encoder (torch MiniLM), a query is encoded by the
    int8 ONNX export of the same model when one exists: it loads in ~0.5 s without importing
    torch (~10 s), and it declares itself a query encoder for the torch route's index
    (Encoder.query_equivalents; the search checks it). Any other encoder, or no export, and the
    query goes through the passage encoder itself.
    """
    threads = settings.query_threads
    wanted = settings.query_encoder
    if wanted == "onnx" or (wanted == "auto" and settings.encoder == "minilm"):
        path = onnx_query_model(settings)
        if path is None and wanted == "onnx":
            raise EncoderError(f"query_encoder=onnx: no ONNX export at {default_path(settings.data_dir)} "
                               "nor an installed one: run `make onnx`")
        if path is not None:
            try:
                return get_encoder("onnx", path=str(path), threads=threads)
            except EncoderError as exc:
                if wanted == "onnx":
                    raise
                log.warning("query encoder: %s; using the %s encoder instead", exc, settings.encoder)
    return make_encoder(settings.model_copy(update={"encoder_threads": threads}))


def index_store(settings: Settings) -> IndexStore:
    return IndexStore(settings.index_dir)


def uses_database_index(settings: Settings) -> bool:
    """True when search, the digest and embedding read and write vectors in the database only
    (docs/distributed.md); Settings refuses that mode on SQLite."""
    return settings.index_source == "database"


KNOWN_PASSAGE_MODELS = {"minilm": (MINILM_MODEL_ID, 384), "fake": ("fake-hash-384", 384)}


def passage_model(settings: Settings) -> tuple[str, int]:
    """(model id, dimension) of the passage encoder settings name, without loading it when known."""
    if settings.encoder in KNOWN_PASSAGE_MODELS:
        return KNOWN_PASSAGE_MODELS[settings.encoder]
    encoder = make_encoder(settings)
    return encoder.model_id, encoder.dim


def passage_vectors_source(settings: Settings, sessions: sessionmaker[Session]):
    """What the digest reads passage vectors from (by id): the local index file, or the database."""
    if uses_database_index(settings):
        from embed.stored_vectors import StoredVectors

        return StoredVectors(sessions, *passage_model(settings))
    return index_store(settings).load()


def database_reader(settings: Settings, sessions: sessionmaker[Session], serving: bool):
    """An in-memory FAISS mirror of the database's vectors, with its keyword half: a tantivy index
    built in RAM from the mirror's passages (database_keywords=tantivy) or PostgreSQL full text."""
    from embed.mirror import MirrorReader, VectorMirror

    model_id, dim = passage_model(settings)
    if settings.database_keywords == "tantivy":
        from embed.keyword_mirror import KeywordMirror

        keywords = companion = KeywordMirror()  # filled and kept in step by the vector mirror
    else:
        from embed.keyword_pg import PgKeywordSearcher

        keywords, companion = PgKeywordSearcher(sessions.kw["bind"]), None  # one per process: it caches term statistics
    mirror = VectorMirror(sessions, model_id, dim, nprobe=settings.nprobe, threads=1 if serving else None,
                          companion=companion)
    return MirrorReader(mirror, lambda: keywords, sync_every=settings.mirror_sync_seconds,
                        check_every=settings.mirror_check_seconds)


def search_context(settings: Settings, sessions: sessionmaker[Session], *, serving: bool = False) -> SearchContext:
    """The query encoder loads on the first query that needs it, so a server starts without it.

    A query is one short text: one thread encodes it fastest on a shared machine (query_threads,
    default 1: p50 12 ms against 111 ms at torch's default on a busy 2-core machine). A server
    answers many queries at once: one FAISS thread each too (3-4x lower latency than 2 threads
    contending per query).
    """
    if uses_database_index(settings):
        return SearchContext(sessions=sessions, reader=database_reader(settings, sessions, serving),
                             encoder_factory=lambda: make_query_encoder(settings),
                             multilingual=make_multilingual_search(settings, serving, sessions))
    reader = IndexReader(index_store(settings), nprobe=settings.nprobe, threads=1 if serving else None)
    return SearchContext(sessions=sessions, reader=reader, encoder_factory=lambda: make_query_encoder(settings),
                         multilingual=make_multilingual_search(settings, serving))
