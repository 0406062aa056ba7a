"""Issue 14 end to end: two machines that share no disk, only PostgreSQL and Redis, with
BRIEFCAST_INDEX_SOURCE=database (tests/distributed_world.py: per machine its own data directory,
`briefcast serve` and Celery embed worker; beat and `briefcast fetch --all` on machine A).

- items fetched on A are found through B's API, B's /health says index_source=database and, once
  caught up, 0 vectors behind; neither data directory holds an index file;
- kill -9 of either embed worker mid-run loses and duplicates nothing: every passage ends with
  exactly one vector row, and both APIs find the items;
- `briefcast reindex` on one machine while a client queries both APIs: every answer is a 200 with
  the expected item among its hits, and afterwards every vector row is newer than before.

The passage encoder is the labelled fake (BRIEFCAST_ENCODER=fake, bag-of-words hashing): this is a
correctness test of where vectors live and how replicas follow them, not of ranking quality. Waits
are liveness deadlines (wait_until), never timed assertions. Every process is stopped at the end.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.conftest import _postgres_database
from tests.distributed_world import FAKE_MODEL, DistributedWorld, code_word, embeds_running, log_size
from tests.workers import send, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FIRST_FEEDS, FIRST_ITEMS = 4, 10  # fetched on A before the first test
ROUND_FEEDS, ROUND_ITEMS = 10, 60  # per kill -9 round: 600 one-passage items, ~150 embed transactions


@pytest.fixture(scope="module")
def pg_url():
    yield from _postgres_database()


@pytest.fixture(scope="module")
def world(tmp_path_factory, pg_url):
    world = DistributedWorld(tmp_path_factory.mktemp("distributed"), pg_url).start()
    try:
        world.add_and_fetch(FIRST_FEEDS, FIRST_ITEMS)
        yield world
    finally:
        world.close()


def _wait(world: DistributedWorld, check, timeout: float, what: str):
    """wait_until, failing with the counts and the processes' logs."""
    try:
        return wait_until(check, timeout, what, every=0.2)
    except AssertionError as error:
        raise AssertionError(f"{error}\ncounts: {world.counts()}\n{world.logs_tail()}") from None


def _settle(world: DistributedWorld, timeout: float = 120) -> dict:
    return _wait(world, world.settled, timeout, "every fetched item split and every passage given its vector")


def _caught_up(world: DistributedWorld, machine: str) -> dict:
    return _wait(world, lambda: world.caught_up(machine), 60, f"machine {machine.upper()}'s mirror to catch up")


def _split(world: DistributedWorld, guids: list[str]) -> dict | None:
    passages = world.passages_of(guids)
    return passages if len(passages) == len(guids) else None


def _spread(values: list, count: int) -> list:
    """`count` values evenly spread over the list, first and last included."""
    if len(values) <= count:
        return list(values)
    step = (len(values) - 1) / (count - 1)
    return [values[round(i * step)] for i in range(count)]


def test_items_fetched_on_a_are_found_through_bs_api(world):
    assert set(world.site.items) <= set(world.item_ids()), "machine A's fetch stored every item"
    passages = _wait(world, lambda: _split(world, list(world.site.items)), 60, "every item split into passages")
    for guid, (item_id, passage_id, body) in passages.items():
        _wait(world, lambda p=passage_id, t=body: world.top_vector_hit("b", p, t), 60, f"{guid}: its vector in B's mirror")
        assert world.finds("b", guid, item_id), f"{guid}: not among B's hybrid hits for its word"
    health = _caught_up(world, "b")
    assert health["index_source"] == "database" and health["index_model"] == FAKE_MODEL
    assert health["index_lag"]["vectors_behind"] == 0 and health["index_count"] == health["passages"]
    assert _caught_up(world, "a")["index_source"] == "database"
    for machine in world.machines.values():
        assert machine.index_files() == [], f"machine {machine.name} wrote an index: {machine.index_files()}"


def _both_embedding(world: DistributedWorld, marks: dict[str, int], floor: int, victim: str,
                    split_done: bool) -> dict | None:
    """The counts once both workers run an embed task sent this round, the new passages are
    partly embedded (some written, many left) and the victim's connection is inside a
    transaction (its claimed rows locked, its vectors not yet committed): the moment to kill it.
    split_done: only once every item is split, so that transaction is one that writes vectors."""
    if not all(embeds_running(world.workers[m], marks[m]) for m in ("a", "b")):
        return None
    counts = world.counts()
    written = counts["passages_with_vector"] - floor
    if written < 20 or counts["passages_without_vector"] < 150 or (split_done and counts["unsplit_items"]):
        return None
    return counts if world.in_transaction(victim) else None


# b: any moment of the run (in practice some items are still being split); a: while writing vectors
@pytest.mark.parametrize(("victim", "split_done"), [("b", False), ("a", True)])
def test_an_embed_worker_killed_mid_run_loses_and_duplicates_nothing(world, victim, split_done):
    _settle(world)
    for machine, process in world.workers.items():
        if not process.alive:
            world.start_worker(machine)
    marks = {m: log_size(p) for m, p in world.workers.items()}
    floor = world.counts()["passages_with_vector"]
    world.add_and_fetch(ROUND_FEEDS, ROUND_ITEMS)
    for _ in range(2):  # one for each worker (prefetch 1); beat's 3 s tick sends more
        send(world.redis.url, "briefcast.embed", queue="embed")
    try:
        at_kill = wait_until(lambda: _both_embedding(world, marks, floor, victim, split_done), 60,
                             "both embed workers mid-run on the new passages", every=0.02)
    except AssertionError as error:
        raise AssertionError(f"{error} (too little to embed?)\ncounts: {world.counts()}\n{world.logs_tail()}") from None
    world.workers[victim].kill9()  # the worker and its pool, inside an embed transaction
    _wait(world, lambda: not world.in_transaction(victim), 30, "the killed worker's transaction to end")

    counts = _settle(world)
    print(f"\nDISTRIBUTED kill -9 embed-{victim}: " + json.dumps(
        {"expected_items": len(world.site.items), **counts,
         "at_kill": {k: at_kill[k] for k in ("unsplit_items", "passages", "passages_with_vector",
                                             "passages_without_vector")}}))
    assert at_kill["passages_without_vector"] > 0, "the kill came after the run had finished"
    assert counts["items"] == counts["distinct_guids"] == len(world.site.items)  # nothing fetched twice
    assert counts["vector_rows"] == counts["passages_with_vector"] == counts["passages"]  # one row each
    assert counts["passages_without_vector"] == counts["passages_unmarked"] == 0

    new = [g for g, (feed, _) in world.site.items.items() if feed >= world.site.feeds - ROUND_FEEDS]
    _assert_both_apis_find(world, _spread(new, 24))
    world.start_worker(victim)


def _assert_both_apis_find(world: DistributedWorld, guids: list[str]) -> None:
    """Each item: top hit of a vector query with its passage's own text (the fake encoder gives
    cosine 1: the mirror holds that vector), and among the hybrid hits for its word."""
    passages = world.passages_of(guids)
    for machine in ("a", "b"):
        _caught_up(world, machine)
        for guid in guids:
            item_id, passage_id, body = passages[guid]
            assert world.top_vector_hit(machine, passage_id, body), (machine, guid, "vector")
            assert world.finds(machine, guid, item_id), (machine, guid, "hybrid")


class Client(threading.Thread):
    """Queries both APIs in turn, each item's word (hybrid) and its passage's text (vector),
    until stopped; records (machine, mode, guid, status, hits, expected item among them, time)."""

    def __init__(self, world: DistributedWorld, passages: dict[str, tuple[int, int, str]]) -> None:
        super().__init__(name="reindex-client", daemon=True)
        self.world, self.passages = world, passages
        self.stop = threading.Event()
        self.answers: list[tuple] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for guid, (item_id, _, body) in self.passages.items():
                    for machine in ("a", "b"):
                        for mode, q in (("hybrid", code_word(*self.world.site.items[guid])), ("vector", body)):
                            self._ask(machine, mode, guid, q, item_id)
                    if self.stop.is_set():
                        return
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def _ask(self, machine: str, mode: str, guid: str, q: str, item_id: int) -> None:
        response = self.world.search(machine, q, mode=mode, k=10)
        hits = response.json()["results"] if response.status_code == 200 else []
        self.answers.append((machine, mode, guid, response.status_code, len(hits),
                             item_id in {h["item_id"] for h in hits}, time.monotonic()))


def test_reindex_on_one_machine_while_both_apis_answer(world):
    _settle(world)
    for machine in ("a", "b"):
        _caught_up(world, machine)
    before = world.vector_seqs()
    client = Client(world, world.passages_of(_spread(sorted(world.site.items), 16)))
    client.start()
    try:
        wait_until(lambda: len(client.answers) >= 8 or client.error, 30, "the client's first answers")
        started = time.monotonic()
        done = world.machines["b"].cli("reindex", timeout=300)
        finished = time.monotonic()
        for machine in ("a", "b"):
            _caught_up(world, machine)
    finally:
        client.stop.set()
        client.join(60)
    assert client.error is None, repr(client.error)
    after = world.vector_seqs()
    during = [a for a in client.answers if started <= a[-1] <= finished]
    print(f"\nDISTRIBUTED reindex: {finished - started:.1f} s, {len(client.answers)} answers "
          f"({len(during)} during the reindex); {done.stdout.strip()}")
    bad = [a for a in client.answers if a[3] != 200 or a[4] == 0 or not a[5]]
    assert not bad, f"{len(bad)} of {len(client.answers)} answers without the item: {bad[:5]}"
    assert len(during) >= 10, f"only {len(during)} answers during a {finished - started:.1f} s reindex"
    assert {m for m, *_ in during} == {"a", "b"}
    assert f"{len(before)} embedded" in done.stdout  # every passage again (its " [rebuilt]" is eaten as rich markup)
    assert set(after) == set(before)  # the same passages, one row each
    assert min(after.values()) > max(before.values()), "a vector row older than the reindex is left"
    for machine in world.machines.values():
        assert machine.index_files() == [], f"machine {machine.name} wrote an index: {machine.index_files()}"
