"""Keyword search on PostgreSQL's full text (migration 0015): the database's `index_mode`
"database" ranking, so replicas on several machines need no index files of their own.

Same contract as tantivy's `KeywordSearcher` (embed/keyword.py): any of the query's words (OR),
passage ids best first, `within` a filter's ids. Same idea of a score too: BM25's sum over the
query's terms of idf x a saturating term frequency, with the Robertson-Sparck Jones idf that
tantivy's `rsj_boost` gives, so a rare word outweighs common ones and a word in half the
passages or more weighs nothing. PostgreSQL's ts_rank has no idf (every word counts the same),
so each term is ranked on its own and weighted here:

    score = sum over terms t of  idf(t) * min(ts_rank(text_search, t), RANK_MAX)

ts_rank of one lexeme grows with its occurrences in the passage and saturates (0.061 for one,
0.076 for two, 0.083 for three, where it is capped: RANK_MAX), the shape of BM25's tf part; no
length normalisation (passages are windows of similar length, and a tight bound on a term's
score lets `_top` skip work). idf needs each term's document frequency: taken from the column's
ANALYZE statistics for common lexemes (`pg_stats.most_common_elems`), else counted in the GIN
index (cheap: a lexeme missing from those statistics is rare); kept for `cache_seconds`, so new
passages shift the weights a little late.

Measured on the retrieval set (tests/test_keyword_pg.py, keyword mode): recall@10 1.000, MRR
0.972, timestamp hit 0.814; tantivy 1.000 / 0.972 / 0.861. Alternatives measured there: uncapped
ts_rank 0.969; with log-length normalisation 0.971 (no bound for skipping, and on synthetic text
0.61 top-10 agreement with tantivy instead of 0.98); plain ts_rank over the OR'ed words, no idf,
0.948; ts_rank_cd 0.833 (under the 0.90 pin); BM25 rebuilt from ts_rank and the tsvector's
length 0.968.

A ranking costs the passages it scores (~2 us each from shared buffers, more from disk). `_top`
scores the rarest words' passages and those holding two of the others first, then only what
can still reach that ranking's last score, with the same answer as scoring every passage that
holds a word (benchmarks/keyword_pg.py: p50 13 ms, p99 70 ms at 1M synthetic passages).

Terms in half the passages or more (idf floored to nothing) do not select passages: passages
with only such words come after every scored one, in no particular order, and only to fill up
`limit`. This keeps a query's cost to the passages of its informative words.

Query text is never parsed as tsquery syntax: the words go through `to_tsvector` (the column's
configuration, so stems and stopwords match), and each resulting lexeme is quoted into a
one-lexeme tsquery. The english configuration does not segment Chinese or Japanese (a whole
run of CJK characters is one "word"), so `has_cjk` is False: no CJK grams here. Nor does it fold
accents as tantivy's analyzer does: "cafe" does not find "café" (the unaccent dictionary would,
but it is an extension some servers lack).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from functools import cache

from sqlalchemy import Connection, Engine, text

CONFIG = "english"  # the configuration of passages.text_search (migration 0015)
FLOOR = 1e-6  # the idf floor of embed.keyword.rsj_boost: a term at or under it weighs nothing
EXACT_COUNT_BELOW = 100_000  # under this many rows (by the planner's estimate) passages are counted exactly
MAX_TERMS = 32  # like embed.search.keyword_terms
NORMALIZATION = 0  # ts_rank's raw score, whatever the passage's length
# ts_rank of one lexeme in a passage, capped at three occurrences (0.0827; 0.0608 for one, 0.0760
# for two, 0.1 for ever more): a bound on a term's score close to what one occurrence gives, so
# the skipping in `_top` skips more. Retrieval set: MRR 0.972 capped, 0.969 uncapped.
RANK_MAX = 0.0828
BOUND = RANK_MAX * (1 + 1e-6)  # the cap as a float4 in PostgreSQL may be a hair above RANK_MAX
SEED_PASSAGES = 2  # the first ranking covers the rarest terms' passages up to twice the limit
SEED_TERM_MAX = 20  # but takes no term in more passages than this many times the limit
WITHIN_DIRECT = 5_000  # a filter of up to this many ids is ranked in one statement
MAX_COMBINED = 10  # terms that cannot reach the bar alone: past this many, no combinations are listed
MAX_CLAUSES = 64  # nor past this many combinations
PAIR_TERMS = 8  # step 1 of `_top` ranks pairs of the rarest of the other terms, up to this many terms
PAIR_PASSAGES = 50  # and only pairs expected to hold up to this many times `limit` passages in all


def rsj_idf(docs: int, with_term: int) -> float:
    """log((N-n+.5)/(n+.5)) floored near 0: the idf tantivy's BM25 is scaled to (rsj_boost)."""
    return max(FLOOR, math.log((docs - with_term + 0.5) / (with_term + 0.5)))


def tsquery_literal(lexeme: str) -> str:
    """One lexeme as tsquery input: quoted, so no character of it is an operator; quotes and
    backslashes doubled as tsquery input wants. The lexeme is taken verbatim (no stemming again)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


_LEXEMES = text("SELECT unnest(tsvector_to_array(to_tsvector(CAST(:config AS regconfig), :words)))")
_ROWS_ESTIMATE = text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'passages'::regclass")
_ROWS = text("SELECT count(*) FROM passages")
# ANALYZE's most common lexemes of the column and the share of rows holding each (the array's
# last three numbers are the minimum, the maximum and the null share: not lexemes).
_COMMON = text("SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
               "WHERE tablename = 'passages' AND attname = 'text_search' AND schemaname = current_schema()")
# Passages holding each lexeme, counted up to `cap` (past it the term is floored anyway).
_DOC_FREQ = text(
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM passages WHERE text_search @@ CAST(q AS tsquery) LIMIT :cap) s) "
    "FROM unnest(CAST(:queries AS text[])) WITH ORDINALITY AS t(q, n) ORDER BY n")


@cache
def _ranking(terms: int, within: bool) -> str:
    """The ranking statement for this many weighted terms: built once per shape, values bound."""
    score = " + ".join(f":w{i} * least(ts_rank(text_search, CAST(:q{i} AS tsquery), {NORMALIZATION}), {RANK_MAX}::real)"
                       for i in range(terms))
    where = "text_search @@ CAST(:match AS tsquery)" + (" AND id = ANY(:within)" if within else "")
    return f"SELECT id, {score} AS score FROM passages WHERE {where} ORDER BY score DESC, id LIMIT :limit"


def reaching(terms: list[str], best: dict[str, float], bar: float) -> list[tuple[str, ...]] | None:
    """The fewest-term sets of `terms` whose best scores add up to `bar`: each term that reaches
    it alone, then each smallest combination of the others that does (none containing another).
    A passage whose terms reach no set scores under the bar. None: too many to list."""
    alone = [(t,) for t in terms if best[t] >= bar]
    rest = [t for t in terms if best[t] < bar]
    if len(rest) > MAX_COMBINED:
        return None
    found: list[frozenset[str]] = []
    for size in range(2, len(rest) + 1):
        for combo in itertools.combinations(rest, size):
            chosen = frozenset(combo)
            if sum(best[t] for t in combo) >= bar and not any(f <= chosen for f in found):
                found.append(chosen)
                if len(found) > MAX_CLAUSES:
                    return None
    return alone + [tuple(t for t in rest if t in f) for f in found]


def _filler(within: bool, exclude: bool) -> str:
    """Passages matching only floored terms: no order worth paying for, the first `limit` found."""
    where = "text_search @@ CAST(:match AS tsquery)"
    if exclude:
        where += " AND NOT text_search @@ CAST(:scored AS tsquery)"
    if within:
        where += " AND id = ANY(:within)"
    return f"SELECT id FROM passages WHERE {where} LIMIT :limit"


class _Expiring:
    """A bounded map whose entries are forgotten `seconds` after they were stored."""

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds, self.size = seconds, size
        self._items: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str):
        with self._lock:
            found = self._items.get(key)
            if found is None or time.monotonic() - found[0] > self.seconds:
                return None
            self._items.move_to_end(key)
            return found[1]

    def put(self, key: str, value: object) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class PgKeywordSearcher:
    """BM25-like top-k over passages.text_search; one per process, safe to share between threads."""

    has_cjk = False

    def __init__(self, engine: Engine, cache_seconds: float = 60.0, cache_size: int = 50_000) -> None:
        self.engine = engine
        self._cache = _Expiring(cache_seconds, cache_size)

    @property
    def count(self) -> int:
        """Passages: exact on a small table, else the planner's estimate (kept up by autovacuum's
        ANALYZE, within a few percent), refreshed every `cache_seconds`."""
        with self.engine.connect() as conn:
            return self._count(conn)

    def search(self, words: Iterable[str], limit: int, within: Sequence[int] | None = None) -> list[int]:
        """Passage ids, best first.

        within: only among these ids (a filter's): the filter's own top `limit`, wherever its
        passages rank overall.
        """
        words = " ".join(str(w).replace("\x00", " ") for w in words)
        allowed = None if within is None else [int(i) for i in within]
        if limit <= 0 or not words.strip() or (allowed is not None and not allowed):
            return []
        with self.engine.connect() as conn:
            lexemes = list(conn.scalars(_LEXEMES, {"config": CONFIG, "words": words}))[:MAX_TERMS]
            if not lexemes:  # stopwords only
                return []
            docs, freqs = self._count(conn), self._freqs(conn, lexemes)
            weights = {lex: rsj_idf(docs, min(n, docs)) for lex, n in freqs.items()}
            scored = sorted((lex for lex in lexemes if weights[lex] > FLOOR), key=freqs.__getitem__)
            floored = [lex for lex in lexemes if weights[lex] <= FLOOR]
            ranked = self._top(conn, scored, weights, freqs, limit, allowed) if scored else []
            if floored and len(ranked) < limit:
                ranked += self._fill(conn, floored, scored, limit - len(ranked), allowed)
            return ranked

    def _top(self, conn: Connection, terms: list[str], weights: dict[str, float], freqs: dict[str, int],
             limit: int, allowed: list[int] | None) -> list[int]:
        """The best `limit` passages holding any of `terms` (rarest first), exactly as ranking every
        such passage would give them, without scoring every passage of the common words:

        1. rank the passages of the rarest terms (enough to fill `limit` twice over, none of the
           common ones) and those holding two of the other terms (the GIN index intersects them),
           all terms scored; the last kept score is a bar the answer's passages reach;
        2. a passage can reach the bar only if the best scores its terms could give (RANK_MAX
           each) add up to it: it holds one term that can alone, or a combination of commoner
           ones. While some such term or combination is not ranked yet, the rarest term in one
           is ranked alone, merged in, and the bar raised; usually step 1 has ranked them all.

        A filter of a few thousand ids is ranked in one step: it bounds the work already."""
        if allowed is not None and len(allowed) <= WITHIN_DIRECT:
            return [pid for pid, _ in self._ranked(conn, _any(terms), terms, weights, limit, allowed)]
        seed, covered = [], 0
        for lexeme in terms:
            if covered >= SEED_PASSAGES * limit or freqs[lexeme] > SEED_TERM_MAX * limit:
                break
            seed.append(lexeme)
            covered += freqs[lexeme]
        if len(seed) == len(terms):
            return [pid for pid, _ in self._ranked(conn, _any(terms), terms, weights, limit, allowed)]
        pairs = _cheap_pairs(terms[len(seed):], freqs, self._count(conn), limit)
        first: list[tuple[str, ...]] = [(t,) for t in seed] + pairs
        best = dict(self._ranked(conn, _clauses(first), terms, weights, limit, allowed)) if first else {}
        bounds = {t: weights[t] * BOUND for t in terms}
        while True:
            top = sorted(best, key=lambda pid: (-best[pid], pid))[:limit]
            bar = best[top[-1]] if len(top) == limit else 0.0
            clauses = reaching(terms, bounds, bar)
            if clauses is None:  # too many combinations to list: every term alone
                clauses = [(t,) for t in terms]
            left = [c for c in clauses if not any(set(f) <= set(c) for f in first)]
            if not left:  # every passage that can reach the bar has been ranked
                return top
            widen = min((t for c in left for t in c), key=freqs.__getitem__)  # the rarest term not yet ranked alone
            first.append((widen,))
            best = {pid: best[pid] for pid in top} | dict(self._ranked(conn, _clauses([(widen,)]), terms, weights,
                                                                       limit, allowed))

    def scores(self, words: Iterable[str], ids: Sequence[int]) -> dict[int, float]:
        """The score of each of `ids` that holds a word of the query (benchmarks compare engines by it)."""
        with self.engine.connect() as conn:
            lexemes = list(conn.scalars(_LEXEMES, {"config": CONFIG, "words": " ".join(words).replace("\x00", " ")}))
            if not lexemes or not ids:
                return {}
            docs, freqs = self._count(conn), self._freqs(conn, lexemes[:MAX_TERMS])
            weights = {lex: rsj_idf(docs, min(n, docs)) for lex, n in freqs.items()}
            terms = [lex for lex in freqs if weights[lex] > FLOOR]
            if not terms:
                return {}
            return dict(self._ranked(conn, _any(terms), terms, weights, len(ids), [int(i) for i in ids]))

    def _ranked(self, conn: Connection, match: str, terms: list[str], weights: dict[str, float], limit: int,
                allowed: list[int] | None) -> list[tuple[int, float]]:
        """(id, score) of the best `limit` passages matching the tsquery `match`, scored over all `terms`."""
        params: dict[str, object] = {"match": match, "limit": limit}
        for i, lexeme in enumerate(terms):
            params[f"q{i}"], params[f"w{i}"] = tsquery_literal(lexeme), weights[lexeme]
        if allowed is not None:
            params["within"] = allowed
        return [tuple(row) for row in conn.execute(text(_ranking(len(terms), allowed is not None)), params)]

    def _fill(self, conn: Connection, floored: list[str], scored: list[str], limit: int,
              allowed: list[int] | None) -> list[int]:
        params: dict[str, object] = {"match": _any(floored), "limit": limit}
        if scored:
            params["scored"] = _any(scored)
        if allowed is not None:
            params["within"] = allowed
        return list(conn.scalars(text(_filler(allowed is not None, bool(scored))), params))

    def _freqs(self, conn: Connection, lexemes: list[str]) -> dict[str, int]:
        """Passages holding each lexeme (up to just over half of all: past that the count does not
        matter): cached, else ANALYZE's share for a common lexeme, else counted in the GIN index."""
        docs = self._count(conn)
        freqs = {lex: self._cache.get("df:" + lex) for lex in lexemes}
        missing = [lex for lex, n in freqs.items() if n is None]
        if missing:
            common = self._common(conn)
            known = {lex: round(common[lex] * docs) for lex in missing if lex in common}
            counted = [lex for lex in missing if lex not in known]
            if counted:
                cap = docs // 2 + 1  # at half the passages the idf is floored: no need to count further
                found = conn.scalars(_DOC_FREQ, {"queries": [tsquery_literal(x) for x in counted], "cap": cap})
                known.update(zip(counted, found, strict=True))
            for lex, n in known.items():
                self._cache.put("df:" + lex, int(n))
                freqs[lex] = int(n)
        return freqs

    def _count(self, conn: Connection) -> int:
        rows = self._cache.get("rows")
        if rows is None:
            estimate = conn.scalar(_ROWS_ESTIMATE) or 0
            rows = estimate if estimate >= EXACT_COUNT_BELOW else conn.scalar(_ROWS)
            self._cache.put("rows", int(rows))
        return int(rows)

    def _common(self, conn: Connection) -> dict[str, float]:
        """Lexeme -> share of passages, for the column's most common lexemes (empty before ANALYZE)."""
        common = self._cache.get("common")
        if common is None:
            row = conn.execute(_COMMON).first()
            common = dict(zip(row[0], row[1], strict=False)) if row and row[0] else {}
            self._cache.put("common", common)
        return common


def _any(lexemes: list[str]) -> str:
    return " | ".join(tsquery_literal(lex) for lex in lexemes)


def _clauses(clauses: list[tuple[str, ...]]) -> str:
    """An OR of ANDs of lexemes as tsquery input."""
    return " | ".join("(" + " & ".join(tsquery_literal(t) for t in clause) + ")" for clause in clauses)


def _cheap_pairs(terms: list[str], freqs: dict[str, int], docs: int, limit: int) -> list[tuple[str, str]]:
    """Pairs of the first PAIR_TERMS `terms` whose passages together are expected to be few (as if
    words were independent): step 1 of `_top` ranks them to raise its bar cheaply."""
    budget = PAIR_PASSAGES * limit
    pairs = []
    for a, b in itertools.combinations(terms[:PAIR_TERMS], 2):
        expected = freqs[a] * freqs[b] / max(docs, 1)
        if expected <= budget:
            pairs.append((a, b))
            budget -= expected
    return pairs
