"""Podcast insights (seed 002): the same point made in different episodes, grouped under the
strongest one as its related insights.

Insights arrive strongest first (the order of their stories' ranks, then the summariser's own
order within an episode). Each one joins the first earlier head whose sentence it matches at
cosine >= threshold and that comes from another episode; otherwise it becomes a head itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from embed.encoder import Encoder
from digest.summary.schema import PodcastInsight


def _episode_key(insight: PodcastInsight) -> int:
    return insight.episode.item_id


def group_related(insights: Sequence[PodcastInsight], encoder: Encoder, threshold: float,
                  limit: int | None = None) -> list[PodcastInsight]:
    """Heads (at most `limit`), each with the insights from other episodes that say the same."""
    if not insights:
        return []
    vectors = encoder.embed_batch([i.insight.text for i in insights])
    heads: list[int] = []
    related: dict[int, list[int]] = {}
    for n in range(len(insights)):
        match = next((h for h in heads if _episode_key(insights[h]) != _episode_key(insights[n])
                      and float(vectors[h] @ vectors[n]) >= threshold), None)
        if match is None:
            heads.append(n)
            related[n] = []
        else:
            related[match].append(n)
    grouped = [dataclasses.replace(insights[h], related=[*insights[h].related, *(insights[r] for r in related[h])])
               for h in heads]
    return grouped[:limit] if limit is not None else grouped
