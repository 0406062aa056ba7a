"""Embedding benchmark: passages/s of the bare model and of the whole embed pipeline, per route.

Routes: "torch" is the default encoder ("minilm": sentence-transformers on torch), "onnx" the int8
ONNX export run on onnxruntime ("onnx"; `make onnx` creates the model). For each route, in a child
process of its own (so load time, peak RSS and imported modules are the route's alone):

1. Load time: building the encoder (imports + model load).
2. Bare model: ``encoder.embed_batch`` on the passage texts in batches of 32, after one untimed
   warm-up batch: wall seconds, passages/s, CPU seconds per passage.
3. Pipeline: ``embed.pipeline.embed_pending`` over items whose texts cut into the same passages
   (see ``bench_pipeline``); "pipeline: not available yet" until that module exists.
4. Peak RSS of the child after the bare model and at its end (``resource.getrusage``).

Then the ratio onnx/torch of bare-model passages/s. The load average is printed before and after:
on a shared 2-core machine other work moves the wall figures, less so the CPU seconds.

Passages: real text from the shared corpus, cut by ``embed.passages.split_text`` (~160 words):
the SummEdits documents, then TWIML podcast transcripts, then (only if more are needed) the QAGS
CNN/DM and XSum source articles; whole documents, so the count can pass --passages by a few.

    .venv/bin/python -m benchmarks.embed [--passages 2000] [--route torch|onnx|both]
        [--threads 2] [--onnx-dir data/models/minilm-onnx-int8] [--onnx-batch-size 1]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from embed.passages import split_text
from tests.conftest import CORPUS  # one definition of where the shared corpus is

BATCH = 32
ROUTES = ("torch", "onnx")
HEAVY = ("torch", "transformers", "sentence_transformers")


# --- the passages ----------------------------------------------------------------------------


def corpus_documents(corpus: Path):
    """Real documents in a fixed order: SummEdits, TWIML transcripts, QAGS source articles."""
    for path in sorted((corpus / "summarization" / "summedits").glob("*.json")):
        yield from dict.fromkeys(record["doc"] for record in json.loads(path.read_text()))
    for path in sorted((corpus / "podcasts" / "transcripts-twiml-whisper" / "episodes").glob("*.txt")):
        yield path.read_text(encoding="utf-8")
    for path in sorted((corpus / "summarization" / "qags-unieval").glob("*.json")):
        yield from dict.fromkeys(record["source"] for record in json.loads(path.read_text()))


def load_passages(corpus: Path, wanted: int) -> tuple[list[str], list[str]]:
    """(documents, their passages): whole documents until at least `wanted` passages."""
    documents: list[str] = []
    passages: list[str] = []
    for document in corpus_documents(corpus):
        if len(passages) >= wanted:
            break
        cut = [p.text for p in split_text(document)]
        if cut:
            documents.append(document)
            passages.extend(cut)
    return documents, passages


# --- one route, in its own process -------------------------------------------------------------


@dataclass
class RouteResult:
    route: str
    model_id: str
    passages: int
    load_s: float
    bare_s: float
    bare_cpu_s: float
    bare_per_s: float
    rss_bare_mb: float
    rss_peak_mb: float
    heavy_imports: list[str]
    pipeline: dict | None = None
    error: str | None = None


def build_encoder(route: str, threads: int, onnx_dir: Path, onnx_batch_size: int):
    from embed.encoder import get_encoder

    if route == "torch":
        return get_encoder("minilm", batch_size=BATCH, threads=threads)
    import embed.onnx_encoder  # noqa: F401  registers "onnx"

    return get_encoder("onnx", path=onnx_dir, threads=threads, batch_size=onnx_batch_size)


def bench_bare(encoder, passages: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of embed_batch over the passages, 32 at a time, after a warm-up."""
    encoder.embed_batch(passages[:BATCH])
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(passages), BATCH):
        encoder.embed_batch(passages[start : start + BATCH])
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_pipeline(encoder, documents: list[str], workdir: Path) -> dict | None:
    """The whole pipeline on the same passages: items in a fresh SQLite database, an empty index,
    then ``embed_pending`` cuts them (split_item with no title is split_text), embeds them in
    batches of 32 where it takes ``batch``, and indexes them. None until embed.pipeline exists.

    Its arguments are passed by name (settings, sessions, encoder, store or index_store, batch),
    so this follows the signature while it settles.
    """
    try:
        from embed.pipeline import embed_pending
    except ModuleNotFoundError as exc:
        if exc.name != "embed.pipeline":
            raise
        print("pipeline: not available yet", flush=True)
        return None
    from embed.index import IndexStore
    from store.db import open_database
    from store.settings import Settings

    settings = Settings(data_dir=workdir / "data", database_url=f"sqlite:///{workdir / 'bench.db'}")
    sessions = open_database(settings.db_url)
    _seed_items(sessions, documents)
    index_store = IndexStore(settings.data_dir / "index")
    available = {"settings": settings, "sessions": sessions, "encoder": encoder, "store": index_store,
                 "index_store": index_store, "batch": BATCH}
    arguments = {name: available[name] for name in inspect.signature(embed_pending).parameters if name in available}
    wall, cpu = time.perf_counter(), time.process_time()
    report = embed_pending(**arguments)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sessions.kw["bind"].dispose()
    summary = asdict(report) if hasattr(report, "__dataclass_fields__") else {"report": repr(report)}
    return {"seconds": wall, "cpu_s": cpu, "report": summary}


def _seed_items(sessions, documents: list[str]) -> None:
    from store.models import Item, Source

    with sessions.begin() as session:
        source = Source(url="http://127.0.0.1/benchmark-embed.xml", kind="feed", title="embed benchmark")
        session.add(source)
        session.flush()
        for n, text in enumerate(documents):
            digest = hashlib.sha256(text.encode()).hexdigest()
            session.add(Item(source_id=source.id, stable_key=hashlib.sha256(f"bench-{n}".encode()).hexdigest(),
                             content_hash=digest, entry_hash=digest, kind="article", title="", text=text))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_route(route: str, passages: list[str], documents: list[str], threads: int, onnx_dir: Path,
              onnx_batch_size: int, pipeline: bool) -> RouteResult:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    started = time.perf_counter()
    encoder = build_encoder(route, threads, onnx_dir, onnx_batch_size)
    load_s = time.perf_counter() - started
    bare_s, bare_cpu = bench_bare(encoder, passages)
    rss_bare = _rss_mb()
    result = RouteResult(route, encoder.model_id, len(passages), load_s, bare_s, bare_cpu, len(passages) / bare_s,
                         rss_bare, rss_bare, sorted(m for m in sys.modules if m in HEAVY))
    if pipeline:
        with tempfile.TemporaryDirectory(prefix="bench-embed-") as workdir:
            result.pipeline = bench_pipeline(encoder, documents, Path(workdir))
    result.rss_peak_mb = _rss_mb()
    return result


def _child(queue, *args) -> None:
    try:
        queue.put(asdict(run_route(*args)))
    except Exception as exc:  # reported by the parent, with the route it belongs to
        queue.put({"route": args[0], "error": f"{type(exc).__name__}: {exc}"})


def run_in_child(route: str, *args) -> dict:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch left from another route
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, route, *args))
    process.start()
    result = queue.get()
    process.join()
    return result


# --- the report --------------------------------------------------------------------------------


def print_route(r: dict) -> None:
    if r.get("error"):
        print(f"{r['route']:>5}: failed: {r['error']}")
        return
    print(f"{r['route']:>5}: {r['model_id']}")
    print(f"       load {r['load_s']:.1f} s | bare model {r['passages']} passages in {r['bare_s']:.1f} s = "
          f"{r['bare_per_s']:.1f} passages/s ({1000 * r['bare_cpu_s'] / r['passages']:.0f} ms CPU per passage) | "
          f"peak RSS {r['rss_bare_mb']:.0f} MB | torch-family modules: {', '.join(r['heavy_imports']) or 'none'}")
    pipe = r.get("pipeline")
    if pipe:
        print(f"       pipeline {pipe['seconds']:.1f} s = {r['passages'] / pipe['seconds']:.1f} passages/s "
              f"({1000 * pipe['cpu_s'] / r['passages']:.0f} ms CPU per passage) | peak RSS {r['rss_peak_mb']:.0f} MB"
              f" | {pipe['report']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--route", choices=(*ROUTES, "both"), default="both")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads per route")
    parser.add_argument("--onnx-dir", type=Path, default=Path("data") / "models" / "minilm-onnx-int8")
    parser.add_argument("--onnx-batch-size", type=int, default=1,
                        help="texts per onnxruntime call inside embed_batch (the encoder's default: 1)")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args(argv)

    documents, passages = load_passages(args.corpus, args.passages)
    if not passages:
        parser.error(f"no corpus text under {args.corpus}")
    words = sum(len(p.split()) for p in passages) / len(passages)
    print(f"{len(passages)} passages ({words:.0f} words on average) from {len(documents)} documents; "
          f"batches of {BATCH}; {args.threads} threads; python {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    routes = ROUTES if args.route == "both" else (args.route,)
    results = {}
    for route in routes:
        if route == "onnx" and not (args.onnx_dir / "model.onnx").is_file():
            print(f" onnx: no model at {args.onnx_dir}: run `make onnx` (or pass --onnx-dir)")
            continue
        results[route] = run_in_child(route, passages, documents, args.threads, args.onnx_dir,
                                      args.onnx_batch_size, args.pipeline)
        print_route(results[route])
    if {"torch", "onnx"} <= results.keys() and not any(r.get("error") for r in results.values()):
        torch_r, onnx_r = results["torch"], results["onnx"]
        print(f"onnx/torch bare-model passages/s: {onnx_r['bare_per_s'] / torch_r['bare_per_s']:.2f}")
        if torch_r.get("pipeline") and onnx_r.get("pipeline"):
            speedup = torch_r["pipeline"]["seconds"] / onnx_r["pipeline"]["seconds"]
            print(f"onnx/torch pipeline passages/s: {speedup:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 1 if any(r.get("error") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
