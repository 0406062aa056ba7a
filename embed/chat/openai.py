"""The `openai` backend: any OpenAI-compatible chat server (vLLM, SGLang, Ollama, llama.cpp's
server) over httpx.

Structured output differs by server: vLLM and SGLang take response_format json_schema; llama.cpp's
server answers it with HTTP 500 but takes {"type": "json_object", "schema": ...}; some take only
json_object. The client tries them in that order and remembers, per server, the first that works.
Requests to one server share a semaphore across threads (settings.llm_max_concurrency).

A prompt must fit the model's context with room for the reply. The context is the setting when
given, else what the server reports (vLLM: max_model_len in /v1/models; llama.cpp's server: n_ctx in
/props), else DEFAULT_CONTEXT_TOKENS. Tokens are counted by the server's own tokenizer when it has
one (llama-cpp-python: /extras/tokenize/count; llama.cpp and vLLM: /tokenize), else estimated
from UTF-8 bytes / 3, which over-counts English (about 4 bytes a token) and counts CJK (3 bytes a
character) as a token each.
"""

from __future__ import annotations

import math
import threading
from urllib.parse import urlsplit, urlunsplit

import httpx

from embed.chat.base import CHATS, ChatError, Completion

FORMATS = ("json_schema", "json_object_schema", "json_object", "none")
DEFAULT_CONTEXT_TOKENS = 4096
_TOKENIZERS = ("/extras/tokenize/count", "/tokenize")  # at the server's root, not under /v1
_REFUSED = {400, 404, 415, 422, 500, 501}  # what servers answer to a response_format they do not take

_modes: dict[str, str] = {}
_semaphores: dict[str, threading.BoundedSemaphore] = {}
_registry_lock = threading.Lock()


def _semaphore(base_url: str, size: int) -> threading.BoundedSemaphore:
    with _registry_lock:
        return _semaphores.setdefault(base_url, threading.BoundedSemaphore(max(1, size)))


def remembered_format(base_url: str) -> str | None:
    return _modes.get(base_url.rstrip("/"))


def response_format(mode: str, schema: dict, name: str) -> dict | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


@CHATS.register("openai")
class OpenAIChat:
    backend = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0,
                 max_concurrency: int = 2, max_tokens: int = 1024, temperature: float = 0.0,
                 context_tokens: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._context = context_tokens
        self._tokenizer: str | None = None  # the tokenize path this server answers ("" once none did)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
        self._slots = _semaphore(self.base_url, max_concurrency)

    def close(self) -> None:
        self._client.close()

    # -- what fits ------------------------------------------------------------------------------

    def context_tokens(self) -> int:
        if self._context is None:
            self._context = self._reported_context() or DEFAULT_CONTEXT_TOKENS
        return self._context

    def _reported_context(self) -> int | None:
        for path, read in (("/models", _models_context), (f"{self._root()}/props", _props_context)):
            try:
                response = self._client.get(path)
                found = read(response.json(), self.model) if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError, TypeError, KeyError, AttributeError):
                found = None
            if isinstance(found, int) and found > 0:
                return found
        return None

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by the server's tokenizer, else a conservative estimate."""
        paths = [self._tokenizer] if self._tokenizer else ([] if self._tokenizer == "" else list(_TOKENIZERS))
        for path in paths:
            counted = self._server_count(path, text)
            if counted is not None:
                self._tokenizer = path
                return counted
        self._tokenizer = ""
        return estimate_tokens(text)

    def _server_count(self, path: str, text: str) -> int | None:
        body = {"input": text, "content": text, "prompt": text, "model": self.model}
        try:
            response = self._client.post(f"{self._root()}{path}", json=body)
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        if isinstance(data, dict) and isinstance(data.get("count"), int):
            return data["count"]
        if isinstance(data, dict) and isinstance(data.get("tokens"), list):
            return len(data["tokens"])
        return None

    def _root(self) -> str:
        """The server's root URL: the base URL without its /v1."""
        parts = urlsplit(self.base_url)
        path = parts.path[:-3] if parts.path.endswith("/v1") else parts.path
        return urlunsplit(parts._replace(path=path))

    def complete(self, messages: list[dict], schema: dict, purpose: str) -> Completion:
        known = _modes.get(self.base_url)
        modes = [known] if known else list(FORMATS)
        last_error = ""
        for mode in modes:
            body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                    "temperature": self.temperature}
            if (fmt := response_format(mode, schema, purpose)) is not None:
                body["response_format"] = fmt
            response = self._post(body)
            if response.status_code in _REFUSED and not known and mode != FORMATS[-1]:
                last_error = f"HTTP {response.status_code} with response_format {mode}: {response.text[:200]}"
                continue
            if response.status_code != 200:
                raise ChatError(f"HTTP {response.status_code} from {self.base_url}: {response.text[:300]}")
            if not known:
                with _registry_lock:
                    _modes[self.base_url] = mode
            return _completion(response)
        raise ChatError(last_error or f"no structured-output mode worked on {self.base_url}")

    def _post(self, body: dict) -> httpx.Response:
        with self._slots:
            for attempt in (1, 2):
                try:
                    return self._client.post("/chat/completions", json=body)
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                    # A keep-alive connection the server had closed (llama-cpp-python's does after
                    # a 500): once more on a fresh one. A chat completion has no side effects.
                    if attempt == 2:
                        raise ChatError(f"{type(exc).__name__} talking to {self.base_url}: {exc}") from exc
                except httpx.HTTPError as exc:
                    raise ChatError(f"{type(exc).__name__} talking to {self.base_url}: {exc}") from exc
        raise AssertionError("unreachable")


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / 3)


def _models_context(data: dict, model: str) -> int | None:
    models = data.get("data") or []
    mine = [m for m in models if m.get("id") == model] or models[:1]
    return mine[0].get("max_model_len") if mine else None


def _props_context(data: dict, model: str) -> int | None:
    settings = data.get("default_generation_settings") or {}
    return settings.get("n_ctx") or data.get("n_ctx")


def _completion(response: httpx.Response) -> Completion:
    try:
        data = response.json()
        text = data["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ChatError(f"not a chat completion: {response.text[:300]}") from exc
    usage = data.get("usage") or {}
    return Completion(text=text, prompt_tokens=usage.get("prompt_tokens"),
                      completion_tokens=usage.get("completion_tokens"))
