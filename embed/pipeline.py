"""The embed stage: items -> passages -> vectors in the FAISS index and texts in the keyword index.

Idempotent and restartable. Passages whose text did not change keep their id and their vector;
only new or changed passages are embedded. Both halves of the index change together and are
committed before the database marks passages as embedded, so a crash between the two costs a
re-embed, never a missing vector or keyword entry.

Nothing to do, nothing written: with no passage waiting and the index holding exactly the
embedded passages, `embed` (the beat runs it every minute) neither opens nor commits the index.
A rebuild (`reindex`, a new encoder) embeds every passage into a new version beside the live
one and switches to it only when it is complete; until then search answers from the old one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from embed.encoder import Encoder
from embed.index import IndexMeta, IndexStore, PassageIndex, VectorIndex, choose_kind
from embed.passages import split_item
from store.entry import Segment
from store.models import Item, Passage
from store.vectors import missing_ids, refresh_statistics, vector_count, vectors_for, write_vectors

SPLIT_CHUNK = 200  # items per transaction while splitting
COMMIT_EVERY = 5000  # passages embedded between index commits: bounds the work a crash loses

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class EmbedReport:
    items_split: int = 0
    passages_added: int = 0
    passages_removed: int = 0
    passages_embedded: int = 0
    rebuilt: bool = False
    seconds: float = 0.0
    index_count: int = 0
    index_kind: str = ""
    vectors_copied: int = 0  # vectors of passages embedded before migration 0014, copied from the index into the database
    keywords_rebuilt: int = 0  # texts re-added because the keyword index did not match the vectors
    multilingual: object | None = None  # the second index's MultilingualReport (embed/multilingual_index.py)


def split_pending(sessions: sessionmaker[Session], report: EmbedReport) -> None:
    """Cut every item whose text changed since its passages were made; unchanged windows stay."""
    while True:
        with sessions() as session, session.begin():
            query = (select(Item).where((Item.passages_hash.is_(None)) | (Item.passages_hash != Item.content_hash))
                     .options(selectinload(Item.segments)).limit(SPLIT_CHUNK))
            if session.get_bind().dialect.name == "postgresql":
                # Embedding workers on several machines split at once: each takes items no other holds.
                query = query.with_for_update(skip_locked=True, of=Item)
            items = session.scalars(query).all()
            if not items:
                return
            for item in items:
                _resplit(session, item, report)
            report.items_split += len(items)


def _resplit(session: Session, item: Item, report: EmbedReport) -> None:
    segments = [Segment(s.text, s.start, s.end, s.speaker) for s in item.segments]
    fresh = split_item(item.title, item.text, segments)
    old = {p.position: p for p in session.scalars(select(Passage).where(Passage.item_id == item.id))}
    for passage in fresh:
        kept = old.pop(passage.position, None)
        if kept is not None and kept.content_hash == passage.content_hash:
            kept.start, kept.end, kept.speaker = passage.start, passage.end, passage.speaker
            continue
        if kept is not None:
            session.delete(kept)
            session.flush()
            report.passages_removed += 1
        session.add(Passage(item_id=item.id, position=passage.position, text=passage.text, start=passage.start,
                            end=passage.end, speaker=passage.speaker, content_hash=passage.content_hash))
        report.passages_added += 1
    for stale in old.values():
        session.delete(stale)
        report.passages_removed += 1
    item.passages_hash = item.content_hash


def _not_embedded_with(model_id: str):
    return (Passage.embedded_model.is_(None)) | (Passage.embedded_model != model_id)


def _pending_batches(sessions, model_id: str | None, batch: int) -> Iterator[list[tuple[int, str]]]:
    """(id, text) of the passages not embedded with `model_id`, in id order; None: every passage."""
    last_id = 0
    while True:
        query = select(Passage.id, Passage.text).where(Passage.id > last_id).order_by(Passage.id).limit(batch)
        with sessions() as session:
            rows = session.execute(query if model_id is None else query.where(_not_embedded_with(model_id))).all()
        if not rows:
            return
        last_id = rows[-1][0]
        yield [(r[0], r[1]) for r in rows]


def _counts(sessions, model_id: str) -> tuple[int, int]:
    """(passages, of which embedded with `model_id`)."""
    with sessions() as session:
        total, embedded = session.execute(select(
            func.count(), func.count().filter(Passage.embedded_model == model_id)).select_from(Passage)).one()
    return int(total), int(embedded or 0)


def _live_ids(sessions) -> set[int]:
    with sessions() as session:
        return set(session.scalars(select(Passage.id)))


def _mark_embedded(sessions, ids: list[int], index: VectorIndex, keep_existing: bool = False) -> None:
    """Mark the passages embedded with the index's model and store their vectors (taken back from
    the committed index) in the same transaction: a marked passage always has its vector in the
    database, which replicas in `index_source=database` mode read (embed/mirror.py)."""
    with sessions() as session, session.begin():
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            found = index.vectors_of(chunk)
            write_vectors(session, index.model_id, list(found), np.array(list(found.values())).reshape(len(found), index.dim),
                          keep_existing)


def embed_pending(
    sessions: sessionmaker[Session],
    encoder: Encoder,
    store: IndexStore,
    *,
    batch: int = 64,
    rebuild: bool = False,
    index_kind: str = "auto",
    nprobe: int = 16,
    progress: Progress | None = None,
    multilingual=None,
) -> EmbedReport:
    """Split changed items, drop vectors of deleted passages, embed what is not yet embedded;
    then, given a MultilingualEmbedding, bring the second index (across languages) up to date."""
    started = time.perf_counter()
    report = EmbedReport()
    split_pending(sessions, report)
    meta = store.meta()
    total, embedded = _counts(sessions, encoder.model_id)
    # The index directory was lost (the marks in the database name vectors no index holds), or it
    # holds another model's: it is rebuilt from the vectors the database holds, encoding only the
    # passages without one. `rebuild` (reindex) encodes every passage again.
    restore = not rebuild and ((meta is None and embedded) or (meta is not None and meta.model_id != encoder.model_id))
    if rebuild or restore:
        report.rebuilt = True
        _rebuild(sessions, encoder, store, report, total, batch=batch, index_kind=index_kind, nprobe=nprobe,
                 progress=progress, reuse_stored=restore)
    else:
        report.vectors_copied = _backfill_vectors(sessions, store, meta, embedded)
        if _up_to_date(meta, encoder.model_id, index_kind, total, embedded):
            report.index_count, report.index_kind = meta.count, meta.kind
        else:
            _update(sessions, encoder, store, report, total - embedded, batch=batch, index_kind=index_kind,
                    nprobe=nprobe, progress=progress)
    refresh_statistics(sessions, report.passages_embedded + report.vectors_copied)
    if multilingual is not None:
        from embed.multilingual import languages_of

        report.multilingual = multilingual.sync(sessions, languages_of(encoder.model_id), batch=batch)
    report.seconds = time.perf_counter() - started
    return report


def _backfill_vectors(sessions, store: IndexStore, meta: IndexMeta | None, embedded: int) -> int:
    """Passages embedded before vectors lived in the database (migration 0014) get theirs copied
    from the live index, not re-encoded; returns how many. Costs two counts when nothing is due."""
    if meta is None or not embedded:
        return 0
    with sessions() as session:
        if vector_count(session, meta.model_id) >= embedded:
            return 0
        wanted = missing_ids(session, meta.model_id)
    index = store.load(meta)
    for start in range(0, len(wanted), 1000):
        found = index.vectors_of(wanted[start:start + 1000])
        with sessions() as session, session.begin():
            write_vectors(session, meta.model_id, list(found), np.array(list(found.values())).reshape(len(found), meta.dim))
    return len(wanted)


def _up_to_date(meta: IndexMeta | None, model_id: str, index_kind: str, total: int, embedded: int) -> bool:
    """True when a writer session would change nothing: every passage is embedded with this model
    and the live version holds as many vectors as there are passages. Equal counts are equal sets:
    a passage is marked only after a commit holds its vector, and a vector leaves the index only
    for a passage that left the database (or in a rebuild, after which all are marked again); so
    the marked passages are all in the index, and an index holding more (a deleted passage's
    vector, not yet dropped) would count more."""
    return (meta is not None and meta.model_id == model_id and meta.keywords_current
            and total == embedded == meta.count and choose_kind(meta.count, index_kind) == meta.kind)


def _update(sessions, encoder: Encoder, store: IndexStore, report: EmbedReport, total: int, *, batch: int,
            index_kind: str, nprobe: int, progress: Progress | None) -> None:
    """Drop deleted passages from the live version and add the pending ones, committing every
    COMMIT_EVERY passages; a session that changed nothing commits nothing."""
    with store.writer(encoder.model_id, encoder.dim) as live:
        if not live.keywords_in_sync():
            report.keywords_rebuilt = _rebuild_keywords(sessions, live)
        report.passages_removed += _drop_deleted(live, _live_ids(sessions))
        done, uncommitted = 0, []
        for rows in _pending_batches(sessions, encoder.model_id, batch):
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            texts = [r[1] for r in rows]
            live.add(ids, encoder.embed_batch(texts), texts)
            uncommitted.extend(ids.tolist())
            done += len(rows)
            if progress:
                progress(done, total)
            if len(uncommitted) >= COMMIT_EVERY:
                store.commit(live)
                _mark_embedded(sessions, uncommitted, live.vectors)
                uncommitted = []
        _maybe_grow_into_ivf(live, index_kind, nprobe)
        if live.changed:
            store.commit(live)
        _mark_embedded(sessions, uncommitted, live.vectors)
        report.passages_embedded = done
        report.index_count, report.index_kind = live.count, live.vectors.kind


def _rebuild(sessions, encoder: Encoder, store: IndexStore, report: EmbedReport, total: int, *, batch: int,
             index_kind: str, nprobe: int, progress: Progress | None, reuse_stored: bool = False) -> None:
    """Every passage embedded again, into a fresh index beside the live version. Nothing is
    committed until all are in (a partial rebuild must never be what search reads), and the
    database learns the new model only after the switch: a rebuild killed at any point leaves the
    old version live and the database agreeing with it. The price: a killed rebuild starts over."""
    embedded: list[int] = []
    with store.writer(encoder.model_id, encoder.dim, fresh=True) as fresh:
        for rows in _pending_batches(sessions, None, batch):
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            texts = [r[1] for r in rows]
            fresh.add(ids, _vectors(sessions, encoder, rows, reuse_stored, report), texts)
            embedded.extend(ids.tolist())
            if progress:
                progress(len(embedded), max(total, len(embedded)))
        _maybe_grow_into_ivf(fresh, index_kind, nprobe)
        store.commit(fresh)  # the switch
        report.index_count, report.index_kind = fresh.count, fresh.vectors.kind
    _mark_embedded(sessions, embedded, fresh.vectors, keep_existing=reuse_stored)
    report.passages_embedded = len(embedded)


def _vectors(sessions, encoder: Encoder, rows: list[tuple[int, str]], reuse_stored: bool,
             report: EmbedReport) -> np.ndarray:
    """The vectors of these passages: the database's where it has them (reuse_stored), else encoded."""
    stored = {}
    if reuse_stored:
        with sessions() as session:
            stored = vectors_for(session, encoder.model_id, [r[0] for r in rows])
    todo = [n for n, (pid, _) in enumerate(rows) if pid not in stored]
    out = np.zeros((len(rows), encoder.dim), dtype=np.float32)
    if todo:
        out[todo] = encoder.embed_batch([rows[n][1] for n in todo])
    for n, (pid, _) in enumerate(rows):
        if pid in stored:
            out[n] = stored[pid]
    report.vectors_copied += len(rows) - len(todo)
    return out


def _drop_deleted(live: PassageIndex, alive: set[int]) -> int:
    """Passages that are gone (a tombstoned item, a rewritten paragraph) leave both halves."""
    stale = [i for i in live.ids() if i not in alive]
    return live.remove(stale)


def _rebuild_keywords(sessions, live: PassageIndex, page: int = 5000) -> int:
    """Re-add the text of every passage the vectors hold (an index from before keywords were
    versioned with it, or one whose halves disagree); returns how many."""
    wanted, added, last_id = set(live.ids()), 0, 0
    live.keywords.clear()
    while True:
        with sessions() as session:
            rows = session.execute(select(Passage.id, Passage.text).where(Passage.id > last_id)
                                   .order_by(Passage.id).limit(page)).all()
        if not rows:
            return added
        last_id = rows[-1][0]
        kept = [(pid, text) for pid, text in rows if pid in wanted]
        live.keywords.add([pid for pid, _ in kept], [text for _, text in kept], replace=False)
        added += len(kept)


def _maybe_grow_into_ivf(live: PassageIndex, setting: str, nprobe: int) -> None:
    wanted = choose_kind(live.count, setting)
    if wanted != live.vectors.kind:
        live.vectors = live.vectors.rebuilt_as(wanted, nprobe=nprobe)
