"""Pipeline benchmark: N items through 2 Celery workers on loopback, to a sent brief.

Everything is real and local: a private redis-server on a free port (broker and results), a
fresh PostgreSQL database, feeds served by ``ingest.localserver`` in a child process, an SMTP
server (aiosmtpd) that receives the brief, and two worker processes started like a user would:

    worker 1:  celery -A worker worker -Q fetch,summarise,deliver -c 2
    worker 2:  celery -A worker worker -Q embed -c 1            (the one index writer)

The feeds: ``--feeds`` RSS files of ``items / feeds`` items each. Their text is made of sentences
of the bundled sample world (AI geopolitics), shuffled with a fixed seed, so every item is
distinct, on the topic, and ~150 words long; links point back to the loopback server.

Timeline (no beat, so the stages are triggered exactly once, as beat would):
  t0  refresh_due          -> one fetch task per source; each one with news asks for an embed run
      fetch done           every item stored (polled in the database)
      embed done           every passage embedded and in the index (embed runs overlap the fetches)
      briefs_due           the topic's brief is built (cluster, rank, summarise) and sent
      sent                 the SMTP server received the message
Per stage it prints the wall span (first task start to last task end) and the busy seconds
(sum of task run times) read from the workers' logs, and end to end from t0 to the message.

Run from the repository root:

    .venv/bin/python -m benchmarks.pipeline [--items 5000] [--feeds 100] [--encoder minilm|onnx|fake]
        [--encoder-path data/models/minilm-onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from benchmarks.ingest import feed_server
from store.db import open_database, scratch_postgres_database
from tests.conftest import PG_ADMIN_URL, ROOT
from tests.email_helpers import SmtpServer
from tests.workers import RedisServer, briefcast_env, pipeline_counts, send, settled, wait_until, worker_process

TOPIC = "ai-geopolitics"
TASK_LINE = re.compile(r"^\[(?P<at>[\d-]+ [\d:,]+): \w+/[\w-]+\] Task (?P<name>[\w.]+)\[[\w-]+\] succeeded in "
                       r"(?P<secs>[\d.]+)s")


# --- the feeds ----------------------------------------------------------------------------------


def sample_sentences() -> list[str]:
    """Sentences of the bundled sample world's feeds and transcripts (placeholders filled in)."""
    from embed.passages import split_sentences
    from ingest.parse import parse_feed

    site, found = ROOT / "samples" / "site", []
    for path in sorted((site / "feeds").iterdir()):
        body = re.sub(rb"\{\{[^}]+\}\}", b"2026-11-30T08:00:00Z", path.read_bytes())
        body = body.replace(b"2026-11-30T08:00:00Z/", b"http://127.0.0.1/")
        for entry in parse_feed(body, url="http://127.0.0.1/" + path.name).entries:
            found += split_sentences(entry.text or "")
    for path in sorted((site / "transcripts").glob("*.txt")):
        found += split_sentences(path.read_text(encoding="utf-8"))
    return [s for s in dict.fromkeys(found) if 8 <= len(s.split()) <= 60]


def write_feeds(root: Path, feeds: int, per_feed: int, base_url: str, seed: int = 5) -> None:
    rng, sentences = random.Random(seed), sample_sentences()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for f in range(feeds):
        items = []
        for n in range(per_feed):
            text = " ".join(rng.sample(sentences, 6))
            title = " ".join(text.split()[:8])
            items.append(
                f"<item><title>{escape(title)}</title><link>{base_url}/f{f}/i{n}.html</link>"
                f"<guid isPermaLink=\"false\">bench-{f}-{n}</guid>"
                f"<pubDate>{format_datetime(now - timedelta(minutes=7 * n + f), usegmt=True)}</pubDate>"
                f"<description>{escape(text)}</description></item>")
        path = root / f"f{f:03d}" / "feed.rss"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Bench {f}'
                        f"</title><link>{base_url}/</link><description>b</description>{''.join(items)}"
                        "</channel></rss>", encoding="utf-8")


# --- the workers' logs --------------------------------------------------------------------------


def task_spans(logs: list[Path]) -> dict[str, dict[str, float]]:
    """Per task name: count, busy seconds, and the wall span from the first start to the last end."""
    spans: dict[str, dict] = defaultdict(lambda: {"tasks": 0, "busy": 0.0, "first": None, "last": None})
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            match = TASK_LINE.match(line)
            if not match:
                continue
            end = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            secs = float(match["secs"])
            span = spans[match["name"].removeprefix("briefcast.")]
            span["tasks"] += 1
            span["busy"] += secs
            span["first"] = min(end - secs, span["first"] or end - secs)
            span["last"] = max(end, span["last"] or end)
    return {k: {"tasks": v["tasks"], "busy_s": round(v["busy"], 1), "wall_s": round(v["last"] - v["first"], 1)}
            for k, v in spans.items()}


# --- the run ------------------------------------------------------------------------------------


def topic_profile(directory: Path) -> None:
    """The bundled topic, due now: its send time set to 00:00 UTC."""
    bundled = (ROOT / "digest" / "topics" / f"{TOPIC}.toml").read_text(encoding="utf-8")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{TOPIC}.toml").write_text(re.sub(r'send_time = "[^"]*"', 'send_time = "00:00"', bundled))


def run(args, work: Path) -> dict:
    from digest.subscribers import add_subscriber
    from store import repo

    marks: dict[str, float] = {}
    redis_server = RedisServer(work / "redis").start()
    smtp = SmtpServer().start()
    topic_profile(work / "topics")
    per_feed = args.items // args.feeds
    processes = []
    try:
        with scratch_postgres_database(PG_ADMIN_URL, "briefcast_pipe") as db_url, \
                feed_server(work / "site", "process") as base_url:
            write_feeds(work / "site", args.feeds, per_feed, base_url)
            sessions = open_database(db_url)
            with sessions() as session, session.begin():
                for f in range(args.feeds):
                    repo.add_source(session, f"{base_url}/f{f:03d}/feed.rss", topic=TOPIC)
            add_subscriber(sessions, "reader@example.org", topics=[TOPIC])
            model = {"encoder_path": args.encoder_path} if args.encoder_path else {}
            env = briefcast_env(work / "data", db_url, redis_server.url, encoder=args.encoder, **model,
                                topics_dir=work / "topics", smtp_host="127.0.0.1", smtp_port=smtp.port,
                                worker_host_slots=4, per_host_concurrency=4,  # one loopback host stands for many
                                visibility_timeout=3600, worker_briefs_check_seconds=86400)
            logs = work / "logs"
            processes = [worker_process("w1", "fetch,summarise,deliver", env, logs, concurrency=2).start(),
                         worker_process("w2", "embed", env, logs, concurrency=1).start()]
            wait_until(lambda: all("ready." in p.log.read_text(errors="replace") for p in processes
                                   if p.log.exists()) and all(p.log.exists() for p in processes), 120, "workers ready")
            expected = args.feeds * per_feed
            t0 = marks["start"] = time.monotonic()
            send(redis_server.url, "briefcast.refresh_due", queue="fetch")
            wait_until(lambda: pipeline_counts(sessions, work / "data" / "index")["distinct_items"] >= expected,
                       3600, "every item stored", every=1)
            marks["fetched"] = time.monotonic()
            counts = wait_until(lambda: settled(sessions, work / "data" / "index", expected), 3600,
                                "every passage indexed", every=1)
            marks["indexed"] = time.monotonic()
            send(redis_server.url, "briefcast.briefs_due", queue="summarise")
            wait_until(lambda: smtp.received, 3600, "the brief in the SMTP server", every=0.5)
            marks["sent"] = time.monotonic()
            sessions.kw["bind"].dispose()
            for p in processes:
                p.stop()
            return {
                "items": expected, "feeds": args.feeds, "encoder": args.encoder, "cores": os.cpu_count(),
                "passages": counts["passages"], "index_vectors": counts["index_vectors"],
                "to_all_stored_s": round(marks["fetched"] - t0, 1),
                "to_all_indexed_s": round(marks["indexed"] - t0, 1),
                "brief_built_and_sent_s": round(marks["sent"] - marks["indexed"], 1),
                "end_to_end_s": round(marks["sent"] - t0, 1),
                "messages": len(smtp.received),
                "subject": smtp.received[0].message["Subject"] if smtp.received else None,
                "tasks": task_spans([p.log for p in processes]),
            }
    finally:
        for p in processes:
            p.stop()
        smtp.stop()
        redis_server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--encoder", default="minilm", choices=["minilm", "onnx", "fake"])
    parser.add_argument("--encoder-path", help="the model directory (onnx: the `make onnx` export)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="briefcast-pipeline-"))
    try:
        figures = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory: {work}", file=sys.stderr)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
