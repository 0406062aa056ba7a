"""The world of tests/data/crosslingual_pairs.json in a database: one source per outlet, one item
per labelled text (with its language and time), embedded by the real embed stage. Shared by
tests/test_crosslingual.py and benchmarks/crosslingual.py."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from embed.index import IndexStore
from embed.pipeline import embed_pending
from store.models import Item, Source

PAIRS = Path(__file__).parent / "data" / "crosslingual_pairs.json"


def load_crosslingual() -> dict:
    return json.loads(PAIRS.read_text(encoding="utf-8"))


def add_items(sessions, data: dict) -> dict[str, int]:
    """Item key -> item id."""
    ids: dict[str, int] = {}
    with sessions() as session, session.begin():
        sources: dict[str, Source] = {}
        for key, spec in data["items"].items():
            if spec["source"] not in sources:
                sources[spec["source"]] = Source(url=f"https://outlet{len(sources)}.example/feed", kind="feed",
                                                 title=spec["source"])
                session.add(sources[spec["source"]])
                session.flush()
            digest = hashlib.sha256(f"{spec['title']}\n{spec['text']}".encode()).hexdigest()
            item = Item(source_id=sources[spec["source"]].id, stable_key=digest[:64], content_hash=digest,
                        entry_hash="e", kind="article", title=spec["title"], text=spec["text"],
                        language="zh-CN" if spec["lang"] == "zh" else "en",
                        published=datetime.fromisoformat(spec["published"].replace("Z", "+00:00")))
            session.add(item)
            session.flush()
            ids[key] = item.id
    return ids


def build_world(settings, sessions, encoder) -> dict[str, int]:
    """Items added and embedded (passages and the passage index) with `encoder`."""
    ids = add_items(sessions, load_crosslingual())
    embed_pending(sessions, encoder, IndexStore(settings.index_dir))
    return ids
