"""Which item each passage belongs to, held in memory for grouping search hits by item.

Grouping needs the owner of every candidate (up to 200 per hybrid search); reading them from the
database was the largest part of a search at 1M passages (1.6-3.8 ms, page lookups scattered over
the file). Here they are one array indexed by passage id: 4 bytes a passage (4 MB at 1M).

The array is an accelerator, never the authority:
- Ids above the highest one loaded are read from the database when a search first meets them
  (all of them, the first time: ~1.4 s at 1M, while that worker also loads FAISS).
- An id inside the range with no entry (not yet seen, or deleted) is asked of the database each
  time a search meets it. "Gone" is never remembered: an absent id is cheap to ask again (only a
  deleted passage the index still holds, until the next embed, is asked repeatedly), while a
  remembered "gone" hid whatever later came with that id until the process restarted.
- An entry, once filled, holds: a passage never changes item, and its id is never given to
  another (AUTOINCREMENT on SQLite since migration 0010, sequences on PostgreSQL).
- search() compares the items of the hits it returns with the database's rows and, if one
  differs (a passage deleted since), regroups that query from the database and corrects the
  entries it read (`correct`): an absent one goes back to unknown.
While one thread loads, the others group from the database rather than wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import Connection, bindparam, select

from store.models import Passage

UNKNOWN = 0  # item ids start at 1; an absent passage is left UNKNOWN, never marked gone
_PASSAGES = Passage.__table__
_ABOVE = select(_PASSAGES.c.id, _PASSAGES.c.item_id).where(_PASSAGES.c.id > bindparam("above"))
_OWNERS = select(_PASSAGES.c.id, _PASSAGES.c.item_id).where(_PASSAGES.c.id.in_(bindparam("ids", expanding=True)))


def owners_from_database(conn: Connection, ids: Iterable[int]) -> dict[int, int]:
    """The database's answer: passage id -> item id for the ids that still exist."""
    wanted = list(ids)
    return dict(conn.execute(_OWNERS, {"ids": wanted}).all()) if wanted else {}


class PassageOwners:
    """Safe for many threads: entries are only ever filled with what the database answered, so
    a race costs at most a repeated question; the array is replaced (grown) only under the lock."""

    def __init__(self) -> None:
        self._items = np.zeros(0, dtype=np.int32)
        self._highest = 0  # every id up to this one has been read once
        self._loading = threading.Lock()

    def lookup(self, conn: Connection, ids: Sequence[int]) -> dict[int, int] | None:
        """passage id -> item id for those that exist; None while another thread is loading."""
        wanted = np.asarray(ids, dtype=np.int64)
        if not len(wanted):
            return {}
        if wanted.max() > self._highest and not self._read_above(conn, int(wanted.max())):
            return None
        items = self._items
        found = items[wanted]
        unknown = wanted[found == UNKNOWN]
        if len(unknown):
            answered = owners_from_database(conn, unknown.tolist())
            items[unknown] = [answered.get(int(pid), UNKNOWN) for pid in unknown]
            found = items[wanted]
        return {int(p): int(i) for p, i in zip(wanted, found) if i != UNKNOWN}

    def correct(self, owners: dict[int, int], asked: Iterable[int]) -> None:
        """Entries for `asked` set to what the database answered (`owners`); absent ones to unknown."""
        items = self._items
        for pid in asked:
            if 0 < pid < len(items):
                items[pid] = owners.get(pid, UNKNOWN)

    def _read_above(self, conn: Connection, needed: int) -> bool:
        if not self._loading.acquire(blocking=False):
            return False
        try:
            if needed <= self._highest:  # another thread read them while this one got here
                return True
            rows = conn.execute(_ABOVE, {"above": self._highest})
            pairs = np.fromiter((v for row in rows for v in row), dtype=np.int64).reshape(-1, 2)
            top = max(needed, int(pairs[:, 0].max()) if len(pairs) else 0)
            if top >= len(self._items):
                grown = np.zeros(max(top + 1, 2 * len(self._items)), dtype=np.int32)
                grown[: len(self._items)] = self._items
                self._items = grown
            self._items[pairs[:, 0]] = pairs[:, 1]
            self._highest = top  # last: a reader that sees it finds the entries filled
            return True
        finally:
            self._loading.release()
