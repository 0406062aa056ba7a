"""The embed stage when the database holds the index (`index_source = "database"`).

Embedding workers on any number of machines run this at once: each transaction claims a batch of
passages that have no vector of this model (FOR UPDATE SKIP LOCKED on PostgreSQL: two workers
never take the same rows), encodes them, and writes their vectors and embedded marks before it
commits. A worker killed mid-batch loses only its open transaction: its row locks go with its
connection and the batch is claimed again by whoever asks next; nothing is written twice (one row
per passage and model). No file is written: every replica syncs its own in-memory mirror.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from embed.encoder import Encoder
from embed.mirror import ensure_quantizer
from embed.pipeline import EmbedReport, Progress, split_pending
from store.vectors import claim_pending, pending_count, refresh_statistics, vector_count, write_vectors


def embed_into_database(sessions: sessionmaker[Session], encoder: Encoder, *, batch: int = 64,
                        rebuild: bool = False, progress: Progress | None = None, multilingual=None) -> EmbedReport:
    """Split changed items, then embed every passage without a vector of this encoder's model
    (rebuild: every passage again, each replaced in place so search answers throughout); then,
    given a DatabaseMultilingualEmbedding, bring the second encoder's roles up to date."""
    started = time.perf_counter()
    report = EmbedReport(index_kind="database")
    split_pending(sessions, report)
    if rebuild:
        report.rebuilt = True
        report.passages_embedded = _reembed_all(sessions, encoder, batch, progress)
    else:
        report.passages_embedded = _embed_claimed(sessions, encoder, batch, progress)
    refresh_statistics(sessions, report.passages_embedded)
    ensure_quantizer(sessions, encoder.model_id)
    with sessions() as session:
        report.index_count = vector_count(session, encoder.model_id)
    if multilingual is not None:
        from embed.multilingual import languages_of

        report.multilingual = multilingual.sync(sessions, languages_of(encoder.model_id), batch=batch)
    report.seconds = time.perf_counter() - started
    return report


def _embed_claimed(sessions, encoder: Encoder, batch: int, progress: Progress | None) -> int:
    with sessions() as session:
        total = pending_count(session, encoder.model_id)
    if not total:
        return 0  # the beat's idle run: two counts, no claim (its anti-join read every row at 1M)
    done, after = 0, 0
    while True:
        with sessions() as session, session.begin():
            rows = claim_pending(session, encoder.model_id, batch, after=after)
            if not rows:
                return done
            done += write_vectors(session, encoder.model_id, [r[0] for r in rows],
                                  encoder.embed_batch([r[1] for r in rows]))
        after = rows[-1][0]  # a passage deleted meanwhile got no vector: never claimed again in this run
        if progress:
            progress(done, max(total, done))


def _reembed_all(sessions, encoder: Encoder, batch: int, progress: Progress | None) -> int:
    from sqlalchemy import func, select

    from store.models import Passage

    with sessions() as session:
        total = int(session.scalar(select(func.count()).select_from(Passage)))
    done, after = 0, 0
    while True:
        with sessions() as session, session.begin():
            rows = session.execute(select(Passage.id, Passage.text).where(Passage.id > after)
                                   .order_by(Passage.id).limit(batch)).all()
            if not rows:
                return done
            done += write_vectors(session, encoder.model_id, [r[0] for r in rows],
                                  encoder.embed_batch([r[1] for r in rows]))
        after = rows[-1][0]
        if progress:
            progress(done, max(total, done))
