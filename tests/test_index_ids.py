"""Ids the index and the owner map hold are never handed out twice, on SQLite (AUTOINCREMENT,
migration 0010) and PostgreSQL (sequences), and a running searcher that saw a passage deleted
still finds whatever comes next: the owner map never remembers an id as gone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, insert, select

from embed.owners import UNKNOWN, PassageOwners, owners_from_database
from embed.pipeline import embed_pending
from embed.search import search
from store import repo
from store.entry import Entry
from store.models import Item, Passage, Source
from tests.test_search import world  # noqa: F401  (the fixture: 4 items embedded, SQLite and PostgreSQL)

LAST = ("Quantum sandwich bakery opens on the moon",
        "The quantum sandwich bakery sells sourdough baked in low gravity to lunar miners. " * 3)
NEXT = ("Zebra ferries cross the fjord at dawn",
        "A fleet of zebra ferries now carries commuters across the fjord before sunrise. " * 3)


def _add(sessions, guid: str, title: str, text: str) -> int:
    with sessions() as session, session.begin():
        source = session.scalars(select(Source).order_by(Source.id)).first()
        repo.upsert_entries(session, source, [Entry(title=title, text=text, guid=guid, language="en",
                                                    url=f"https://news.example/{guid}",
                                                    published=datetime(2026, 11, 21, tzinfo=UTC))])
        return session.scalar(select(Item.id).where(Item.guid == guid))


def _passages(sessions, item_id: int) -> set[int]:
    with sessions() as session:
        return set(session.scalars(select(Passage.id).where(Passage.item_id == item_id)))


def test_the_last_rows_ids_are_never_handed_out_again(world, sessions):  # noqa: F811
    """Delete the newest source, item and passage, insert new ones: each gets a higher id."""
    last_item = _add(sessions, "last", *LAST)
    embed_pending(sessions, world[2], world[1])
    last_passages = _passages(sessions, last_item)
    with sessions() as session, session.begin():
        last_source = session.scalar(select(func.max(Source.id)))
        session.execute(delete(Item).where(Item.id == last_item))  # its passages go with it (cascade)
        session.execute(delete(Source).where(Source.id == last_source))
    next_item = _add(sessions, "next", *NEXT)
    embed_pending(sessions, world[2], world[1])
    assert next_item > last_item
    assert min(_passages(sessions, next_item)) > max(last_passages)
    with sessions() as session, session.begin():
        again = session.execute(insert(Source).values(url="https://again.example/feed", kind="feed",
                                                      consecutive_failures=0, active=True, weight=1.0,
                                                      created_at=datetime.now(UTC)).returning(Source.id)).scalar()
    assert again > last_source


def test_a_running_search_finds_new_content_after_seeing_a_deletion(world, sessions):  # noqa: F811
    """The issue's sequence, in one long-lived search context (what an API worker holds): the
    newest item is found, deleted (its passages still in the index until the next embed, so a
    search meets them and learns they are gone), then a new item is stored and embedded."""
    ctx, store, encoder, _ = world
    last_item = _add(sessions, "last", *LAST)
    embed_pending(sessions, encoder, store)
    assert [h.item_id for h in search(ctx, "quantum sandwich bakery", k=3)][:1] == [last_item]
    with sessions() as session, session.begin():
        repo.delete_item(session, last_item)
    assert last_item not in {h.item_id for h in search(ctx, "quantum sandwich bakery", k=3)}
    next_item = _add(sessions, "next", *NEXT)
    embed_pending(sessions, encoder, store)
    assert [h.item_id for h in search(ctx, "zebra ferries fjord", k=3)][:1] == [next_item]
    assert [h.item_id for h in search(ctx, "zebra ferries fjord", k=3, mode="keyword")][:1] == [next_item]


def test_the_owner_map_never_remembers_an_id_as_gone(world, sessions):  # noqa: F811
    """Even were an id to come back (a restored database), an absent id is asked again next time."""
    owners = PassageOwners()
    with sessions() as session:
        ids = sorted(session.scalars(select(Passage.id)))
        item = session.scalar(select(Passage.item_id).where(Passage.id == ids[-1]))
    with sessions() as session:
        owners.lookup(session.connection(), ids)
    with sessions() as session, session.begin():
        row = session.execute(select(Passage.__table__).where(Passage.id == ids[-1])).mappings().one()
        session.execute(delete(Passage).where(Passage.id == ids[-1]))
    with sessions() as session:  # what search() does when a hit's row is missing: the database's answer
        owners.correct(owners_from_database(session.connection(), ids), ids)
        assert ids[-1] not in owners.lookup(session.connection(), ids)
    assert owners._items[ids[-1]] == UNKNOWN
    with sessions() as session, session.begin():
        session.execute(insert(Passage.__table__).values(dict(row)))  # the same id, back
    with sessions() as session:
        assert owners.lookup(session.connection(), ids)[ids[-1]] == item


# --- migration 0010 on a populated SQLite database ---------------------------------------------

_ITEM_COLUMNS = "source_id, stable_key, content_hash, entry_hash, kind, title, text, truncated, text_source, created_at, updated_at"


def _populate(conn) -> None:
    from sqlalchemy import text

    conn.execute(text("INSERT INTO sources (id, url, kind, consecutive_failures, active, created_at) "
                      "VALUES (1, 'https://a.example/feed', 'feed', 0, 1, '2026-01-01')"))
    for n in (1, 2, 3):
        conn.execute(text(f"INSERT INTO items (id, {_ITEM_COLUMNS}) VALUES "
                          f"({n}, 1, 'k{n}', 'h', 'e', 'episode', 't', 'x', 0, 'feed', '2026-01-01', '2026-01-01')"))
        conn.execute(text(f"INSERT INTO passages (id, item_id, position, text, content_hash) VALUES ({n}, {n}, 0, 'p', 'h')"))
        conn.execute(text(f"INSERT INTO transcript_segments (item_id, position, text) VALUES ({n}, 0, 's')"))


@pytest.mark.parametrize("start", ["0009_model_call_text", "0007_source_weight"])
def test_migration_0010_rebuilds_the_tables_and_loses_no_row(tmp_path, start):
    """Rebuilding `items` drops the old table: with foreign keys enforced that would cascade into
    passages and segments. From 0007 the earlier migrations' writes are pending when 0010 runs."""
    from sqlalchemy import text

    from store.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, start)
    with engine.begin() as conn:
        _populate(conn)
    migrate(engine, "0010_never_reused_ids")
    with engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("sources", "items", "passages", "transcript_segments")]
        assert counts == [1, 3, 3, 3]
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        for table in ("sources", "items", "passages"):
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}).scalar()
            assert "AUTOINCREMENT" in sql, table
        indexes = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))}
        assert {"ix_items_published", "ix_passages_item_id", "ix_passages_embedded_model"} <= indexes
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM items WHERE id = 3"))  # the cascade still works
        assert conn.execute(text("SELECT count(*) FROM passages")).scalar() == 2
        conn.execute(text(f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES "
                          "(1, 'k4', 'h', 'e', 'article', 't', 'x', 0, 'feed', '2026-01-01', '2026-01-01')"))
        assert conn.execute(text("SELECT max(id) FROM items")).scalar() == 4
    engine.dispose()


def test_at_head_the_tables_the_index_holds_ids_of_keep_autoincrement(tmp_path):
    """A later migration that rebuilds one of these tables (alembic batch, recreate) must pass
    table_kwargs={"sqlite_autoincrement": True} and switch foreign keys off, as 0010 does."""
    from sqlalchemy import text

    from store.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'head.db'}")
    migrate(engine)
    with engine.connect() as conn:
        for table in ("sources", "items", "passages"):
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}).scalar()
            assert "AUTOINCREMENT" in sql, table
    engine.dispose()


def test_downgrading_below_0011_keeps_every_row_and_autoincrement(tmp_path):
    """0011 adds a column; taking it away again must not rebuild `items` (a rebuild with foreign
    keys on cascades into passages and segments, and loses AUTOINCREMENT)."""
    from sqlalchemy import text

    from store.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'down.db'}")
    migrate(engine, "0010_never_reused_ids")
    with engine.begin() as conn:
        _populate(conn)
    migrate(engine, "0011_item_text_caps")
    from alembic import command
    from alembic.config import Config

    from store.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0010_never_reused_ids")
    with engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("sources", "items", "passages", "transcript_segments")]
        assert counts == [1, 3, 3, 3]
        sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'items'")).scalar()
        assert "AUTOINCREMENT" in sql and "text_capped" not in sql
    engine.dispose()
