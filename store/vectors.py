"""Vectors in the database: how they are written, claimed, read past a watermark and shared.

The rules that keep every replica right (embed/mirror.py reads with them):
- A vector is written in the transaction that marks its passage embedded (`write_vectors`), so a
  committed mark always has its vector and a crash leaves neither.
- `seq` only grows, and on PostgreSQL writers take a transaction-level advisory lock before they
  insert: the transaction that drew a smaller seq has committed before a larger one is drawn, so
  a reader that saw seq N never later finds a new row below N. (SQLite has one writer at a time.)
- Tombstones come from a trigger on `passages` and are not ordered that way (a delete commits
  whenever its transaction does); a replica that missed one still answers right, because search
  reads each hit's row from the database, and its periodic count check finds and drops it.
- Several embedding workers claim different passages (`claim_pending`: FOR UPDATE SKIP LOCKED on
  PostgreSQL); the rows stay locked until their vectors commit, and a killed worker's locks go
  with its connection, so another takes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, delete, exists, func, insert, select, text, update
from sqlalchemy.orm import Session

from store.models import Passage, PassageTombstone, PassageVector, VectorQuantizer, utcnow

DTYPE = np.float32
# PostgreSQL advisory lock held by a transaction while it inserts vectors (see above); any 64-bit
# number no other lock of ours takes (store/db.py MIGRATION_LOCK_KEY is another).
VECTOR_ORDER_KEY = int.from_bytes(b"bcvector", "big") & 0x7FFF_FFFF_FFFF_FFFF


def pack(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=DTYPE).tobytes()


def unpack_many(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=DTYPE)
    return np.frombuffer(b"".join(blobs), dtype=DTYPE).reshape(len(blobs), dim)


def _is_postgres(session_or_conn) -> bool:
    return session_or_conn.get_bind().dialect.name == "postgresql" if isinstance(session_or_conn, Session) \
        else session_or_conn.dialect.name == "postgresql"


def write_vectors(session: Session, model_id: str, ids: Sequence[int], vectors: np.ndarray,
                  keep_existing: bool = False, mark: bool = True) -> int:
    """Store the vectors of these passages for `model_id` and mark them embedded with it, in the
    caller's transaction; a passage deleted meanwhile is skipped. Returns how many were marked.

    A passage that already has a vector of this model gets a new row (a new seq), so replicas take
    the new one as a change; keep_existing: its stored vector is kept (the caller took it from there).
    mark=False: vectors of another role than the passage encoder's (no embedded mark)."""
    ids = [int(i) for i in ids]
    if not ids:
        return 0
    vectors = np.asarray(vectors, dtype=DTYPE)
    alive = set(session.scalars(select(Passage.id).where(Passage.id.in_(ids))))
    rows = [{"passage_id": pid, "model_id": model_id, "dim": int(vectors.shape[1]), "data": pack(vec)}
            for pid, vec in zip(ids, vectors, strict=True) if pid in alive]
    if not rows:
        return 0
    if _is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": VECTOR_ORDER_KEY})
    kept = [r["passage_id"] for r in rows]
    if keep_existing:
        stored = set(session.scalars(select(PassageVector.passage_id).where(
            PassageVector.model_id == model_id, PassageVector.passage_id.in_(kept))))
        rows = [r for r in rows if r["passage_id"] not in stored]
    else:
        session.execute(delete(PassageVector).where(PassageVector.model_id == model_id,
                                                    PassageVector.passage_id.in_(kept)))
    if rows:
        session.execute(insert(PassageVector), rows)
    if mark:  # the passage encoder's vectors; a second role's (embed/multilingual_index.py) marks nothing
        session.execute(update(Passage).where(Passage.id.in_(kept)).values(embedded_model=model_id))
    return len(kept)


def _without_vector(model_id: str):
    return ~exists().where(PassageVector.passage_id == Passage.id, PassageVector.model_id == model_id)


def claim_pending(session: Session, model_id: str, limit: int, after: int = 0) -> list[tuple[int, str]]:
    """(id, text) of up to `limit` passages with no vector of `model_id`, in id order from `after`.

    On PostgreSQL the rows stay locked for the caller's transaction and rows another worker holds
    are skipped; on SQLite (one machine) two callers may take the same rows, and the second write
    replaces the first's identical vectors."""
    query = (select(Passage.id, Passage.text).where(Passage.id > after, _without_vector(model_id))
             .order_by(Passage.id).limit(limit))
    if _is_postgres(session):
        query = query.with_for_update(skip_locked=True, of=Passage)
    return [(int(pid), body) for pid, body in session.execute(query).all()]


def pending_count(conn: Connection | Session, model_id: str) -> int:
    """Passages without a vector of `model_id`: passages minus vectors, two index-only counts. (An
    anti-join over both tables spilled ~45 MB to temporary files at 1M on every idle embed run.)
    Exact: a vector row exists only for a live passage (the foreign key) and once per model."""
    passages = int(conn.execute(select(func.count()).select_from(Passage)).scalar())
    return max(0, passages - vector_count(conn, model_id))


def missing_ids(conn: Connection | Session, model_id: str) -> list[int]:
    """Passages marked embedded with `model_id` that have no vector row (embedded before vectors
    lived in the database): the local index holds theirs, and the embed stage copies them over."""
    return [int(i) for i in conn.execute(select(Passage.id).where(Passage.embedded_model == model_id,
                                                                   _without_vector(model_id)))
            .scalars()]


def vectors_after(conn: Connection | Session, model_id: str, after_seq: int, limit: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seqs, passage ids, vectors) of up to `limit` rows of `model_id` with seq > after_seq, in seq order."""
    rows = conn.execute(select(PassageVector.seq, PassageVector.passage_id, PassageVector.dim, PassageVector.data)
                        .where(PassageVector.model_id == model_id, PassageVector.seq > after_seq)
                        .order_by(PassageVector.seq).limit(limit)).all()
    dim = rows[0][2] if rows else 0
    return (np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64),
            unpack_many([r[3] for r in rows], dim))


def vectors_for(conn: Connection | Session, model_id: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
    """passage id -> vector of `model_id`, for those of `ids` that have one."""
    found: dict[int, np.ndarray] = {}
    ids = [int(i) for i in ids]
    for start in range(0, len(ids), 1000):
        rows = conn.execute(select(PassageVector.passage_id, PassageVector.data).where(
            PassageVector.model_id == model_id, PassageVector.passage_id.in_(ids[start:start + 1000]))).all()
        found.update({int(pid): np.frombuffer(blob, dtype=DTYPE) for pid, blob in rows})
    return found


def tombstones_after(conn: Connection | Session, after_seq: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(seqs, passage ids) of up to `limit` tombstones with seq > after_seq, in seq order."""
    rows = conn.execute(select(PassageTombstone.seq, PassageTombstone.passage_id)
                        .where(PassageTombstone.seq > after_seq).order_by(PassageTombstone.seq).limit(limit)).all()
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64)


def heads(conn: Connection | Session, model_id: str) -> tuple[int, int]:
    """(highest vector seq of `model_id`, highest tombstone seq); 0 when there is none."""
    vector = conn.execute(select(func.max(PassageVector.seq)).where(PassageVector.model_id == model_id)).scalar()
    tomb = conn.execute(select(func.max(PassageTombstone.seq))).scalar()
    return int(vector or 0), int(tomb or 0)


def vector_count(conn: Connection | Session, model_id: str, upto_seq: int | None = None) -> int:
    """Rows of `model_id`; upto_seq: only those at or below it (what a replica at that watermark holds)."""
    query = select(func.count()).select_from(PassageVector).where(PassageVector.model_id == model_id)
    if upto_seq is not None:
        query = query.where(PassageVector.seq <= upto_seq)
    return int(conn.execute(query).scalar())


def vector_ids(conn: Connection | Session, model_id: str, upto_seq: int | None = None) -> np.ndarray:
    """Every passage id with a vector of `model_id` (a replica's full check, ~8 MB at 1M);
    upto_seq: only rows at or below that seq (what a replica at that watermark should hold)."""
    query = select(PassageVector.passage_id).where(PassageVector.model_id == model_id)
    if upto_seq is not None:
        query = query.where(PassageVector.seq <= upto_seq)
    return np.fromiter((r[0] for r in conn.execute(query)), dtype=np.int64)


def get_quantizer(conn: Connection | Session, model_id: str) -> np.ndarray | None:
    """The shared IVF centroids (nlist x dim) of `model_id`, or None before any was trained."""
    row = conn.execute(select(VectorQuantizer.nlist, VectorQuantizer.dim, VectorQuantizer.data)
                       .where(VectorQuantizer.model_id == model_id)).first()
    return None if row is None else np.frombuffer(row[2], dtype=DTYPE).reshape(row[0], row[1]).copy()


def put_quantizer(session: Session, model_id: str, centroids: np.ndarray) -> np.ndarray:
    """Store these centroids unless another process stored some first; returns the stored ones
    (so every replica uses the same, whoever trained first)."""
    if _is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement = pg_insert(VectorQuantizer).on_conflict_do_nothing(index_elements=["model_id"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(VectorQuantizer).on_conflict_do_nothing(index_elements=["model_id"])
    centroids = np.ascontiguousarray(centroids, dtype=DTYPE)
    session.execute(statement.values(model_id=model_id, nlist=int(centroids.shape[0]), dim=int(centroids.shape[1]),
                                     data=centroids.tobytes(), created_at=utcnow()))
    session.flush()
    return get_quantizer(session, model_id)


def drop_quantizer(session: Session, model_id: str) -> None:
    session.execute(delete(VectorQuantizer).where(VectorQuantizer.model_id == model_id))


BULK_ROWS = 10_000  # vectors written in one run beyond which the planner's statistics are refreshed


def refresh_statistics(sessions, written: int) -> None:
    """ANALYZE passage_vectors after a bulk write on PostgreSQL. Right after one (a first embed, a
    reindex, vectors copied from an old index) autovacuum has not yet analyzed the table, and the
    planner's guess of a few hundred rows made every page of a replica's load scan and sort the
    rest of the table: 5.8 s instead of 2 s at 100k, minutes at 1M."""
    if written < BULK_ROWS:
        return
    with sessions() as session, session.begin():
        if _is_postgres(session):
            session.execute(text("ANALYZE passage_vectors"))



def delete_vectors(session: Session, model_id: str, ids: Sequence[int]) -> int:
    """Drop these passages' vectors of `model_id` (a passage that left a role, not the database:
    replicas find it by their count check, as no tombstone is written)."""
    ids, dropped = [int(i) for i in ids], 0
    for start in range(0, len(ids), 1000):
        dropped += session.execute(delete(PassageVector).where(
            PassageVector.model_id == model_id, PassageVector.passage_id.in_(ids[start:start + 1000]))).rowcount
    return dropped
