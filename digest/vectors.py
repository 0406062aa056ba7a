"""Item and passage vectors for the digest, taken from the passage index rather than re-embedded.

An item's vector is the normalised mean of its first passages' vectors, reconstructed from the
FAISS index by passage id (IndexIDMap2 and IVF with a direct map both reconstruct by id). That
costs no encoder call at all: the embed stage already paid for every vector. Only the lead
passages are used: an article's first window carries its title and lede, which say what the
story is; a transcript's later windows wander (measured on tests/data/story_pairs.json, see
docs/benchmarks.md). An item whose passages are not in the index yet is left for the next run,
unless an encoder is given, in which case its title and lead passage are embedded directly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.crosslingual import cjk_lead, is_cjk
from embed.encoder import Encoder, normalise
from embed.index import VectorIndex
from store.models import Item, Passage

LEAD_PASSAGES = 1  # passages per item averaged into its vector (1 measured best, see docs/benchmarks.md)


def unit(vector: np.ndarray) -> np.ndarray:
    return normalise(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]


def passage_vectors(index, passage_ids: list[int]) -> dict[int, np.ndarray]:
    """Vectors of the passages the index (a VectorIndex, or the database's StoredVectors) holds;
    ids it does not hold are simply absent."""
    if index is None or not passage_ids:
        return {}
    return index.vectors_of(passage_ids)


def item_passages(session: Session, item_ids: Iterable[int], model_id: str | None,
                  lead: int | None = LEAD_PASSAGES) -> dict[int, list[Passage]]:
    """The embedded passages of each item in reading order, at most `lead` of them."""
    item_ids = list(item_ids)
    out: dict[int, list[Passage]] = defaultdict(list)
    for start in range(0, len(item_ids), 500):
        query = select(Passage).where(Passage.item_id.in_(item_ids[start:start + 500])).order_by(Passage.item_id, Passage.position)
        if model_id is not None:
            query = query.where(Passage.embedded_model == model_id)
        for passage in session.scalars(query):
            if lead is None or len(out[passage.item_id]) < lead:
                out[passage.item_id].append(passage)
    return out


def item_vectors(session: Session, items: list[Item], index: VectorIndex | None, encoder: Encoder | None = None,
                 lead: int | None = LEAD_PASSAGES) -> dict[int, np.ndarray]:
    """item id -> unit vector; items with no vector available are left out."""
    model_id = index.model_id if index is not None else None
    passages = item_passages(session, [i.id for i in items], model_id, lead) if index is not None else {}
    vectors = passage_vectors(index, [p.id for ps in passages.values() for p in ps])
    out: dict[int, np.ndarray] = {}
    missing: list[Item] = []
    for item in items:
        rows = [vectors[p.id] for p in passages.get(item.id, []) if p.id in vectors]
        if rows:
            out[item.id] = unit(np.mean(rows, axis=0))
        else:
            missing.append(item)
    if missing and encoder is not None and (index is None or encoder.model_id == index.model_id):
        embedded = encoder.embed_batch([lead_text(i) for i in missing])
        out.update({item.id: embedded[n] for n, item in enumerate(missing)})
    return out


def lead_text(item: Item, words: int = 160) -> str:
    """Title and the first words of the text: what an item is about, in one encoder window."""
    text = item.text or ""
    body = cjk_lead(text, words) if is_cjk(text[:2000]) else " ".join(text.split()[:words])
    return f"{item.title}. {body}" if item.title and item.title not in body else body or item.title or ""
