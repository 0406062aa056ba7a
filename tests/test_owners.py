"""The in-memory passage -> item map that search() groups hits with (embed/owners.py), on SQLite
and PostgreSQL: it fills itself from the database, learns new passages and deletions, yields to
a loading thread, and search() regroups from the database when the map is wrong."""

from __future__ import annotations

from sqlalchemy import delete, select

from embed.owners import UNKNOWN, PassageOwners, owners_from_database
from embed.search import search
from store.models import Item, Passage
from tests.test_search import DOCS, world  # noqa: F401  (the fixture)


def _truth(sessions) -> dict[int, int]:
    with sessions() as session:
        return dict(session.execute(select(Passage.id, Passage.item_id)).all())


def test_the_map_answers_like_the_database_and_reads_new_ids_on_demand(world, sessions):  # noqa: F811
    truth = _truth(sessions)
    owners = PassageOwners()
    ids = sorted(truth)
    with sessions() as session:
        assert owners.lookup(session.connection(), ids[:2]) == {p: truth[p] for p in ids[:2]}  # loads them all
        never = max(ids) + 50  # in no table: asked, and not remembered (tests/test_index_ids.py)
        assert owners.lookup(session.connection(), ids + [never]) == truth
    assert owners._items[never] == UNKNOWN


def test_a_deleted_item_still_in_the_index_leaves_the_results_and_the_map(world, sessions):  # noqa: F811
    ctx, *_ = world
    query = "a cooking robot stirs soup"
    before = search(ctx, query, k=10)
    robot = next(h for h in before if h.title == DOCS["robot"][0])
    with sessions() as session, session.begin():
        session.execute(delete(Item).where(Item.id == robot.item_id))  # passages go too (cascade); no re-embed
    after = search(ctx, query, k=10)
    assert robot.item_id not in {h.item_id for h in after}
    assert [h.item_id for h in after] == [h.item_id for h in before if h.item_id != robot.item_id]
    assert ctx.owners._items[robot.passage_id] == UNKNOWN  # corrected by the regrouping; asked again, never 'gone'
    assert search(ctx, query, k=10) == after


def test_a_thread_meeting_a_load_in_progress_is_told_to_ask_the_database(world, sessions):  # noqa: F811
    owners = PassageOwners()
    ids = sorted(_truth(sessions))
    with sessions() as session:
        owners._loading.acquire()
        try:
            assert owners.lookup(session.connection(), ids) is None
        finally:
            owners._loading.release()
        assert owners.lookup(session.connection(), ids) == owners_from_database(session.connection(), ids)


def test_search_regroups_from_the_database_when_the_map_is_wrong(world, sessions):  # noqa: F811
    ctx, *_ = world
    right = search(ctx, "export controls accelerators open weights", k=10)
    assert right and len({h.item_id for h in right}) == len(right)
    lead = right[0]
    # As if SQLite had given a deleted passage's id to a new one: the map names the wrong item.
    ctx.owners._items[lead.passage_id] = right[-1].item_id if right[-1].item_id != lead.item_id else lead.item_id + 99
    again = search(ctx, "export controls accelerators open weights", k=10)
    assert [(h.item_id, h.passage_id, h.more_passages) for h in again] == \
        [(h.item_id, h.passage_id, h.more_passages) for h in right]
    assert ctx.owners._items[lead.passage_id] == lead.item_id  # corrected from the database's answer
