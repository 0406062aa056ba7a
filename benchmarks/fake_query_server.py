"""`briefcast serve` whose queries are encoded by the fake hashing encoder: a baseline, benchmarks only.

benchmarks/search.py runs it beside the real server on the same MiniLM index in the same run, so
the difference in server CPU per request is what encoding a query with the real encoder costs
(ratios measured minutes apart on a shared machine, not across sessions). The fake encoder
declares itself a query encoder of MiniLM's index, so the search's model check lets it through;
everything else is `briefcast serve` unchanged.

    python -m benchmarks.fake_query_server --host 127.0.0.1 --port 8000   # one worker only

One worker only: uvicorn starts more workers as fresh processes that import api.app by name, so
the replaced encoder would not reach them.
"""

from __future__ import annotations

import sys

import embed.runtime as runtime
from embed.encoder import MINILM_MODEL_ID, FakeEncoder


class BaselineQueryEncoder(FakeEncoder):
    """Hashing bag of words (~0.1 ms a query), accepted by an index of MiniLM's vectors."""

    query_equivalents = frozenset({MINILM_MODEL_ID})


def fake_query_encoder(settings) -> BaselineQueryEncoder:
    return BaselineQueryEncoder()


def main(argv: list[str]) -> None:
    if "--workers" in argv and argv[argv.index("--workers") + 1] != "1":
        raise SystemExit("benchmarks.fake_query_server runs one worker only")
    # search_context looks make_query_encoder up when the first query needs it: replaced here,
    # before uvicorn imports the app in this same process.
    runtime.make_query_encoder = fake_query_encoder
    from api.cli import app

    app(["serve", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
