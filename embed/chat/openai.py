"""The `openai` backend: any OpenAI-compatible chat server (vLLM, SGLang, Ollama, llama.cpp's
server) over httpx.

Structured output differs by server: vLLM and SGLang take response_format json_schema; llama.cpp's
server answers it with HTTP 500 but takes {"type": "json_object", "schema": ...}; some take only
json_object. The client tries them in that order and remembers, per server, the first that works.
Requests to one server share a semaphore across threads (settings.llm_max_concurrency).
"""

from __future__ import annotations

import threading

import httpx

from embed.chat.base import CHATS, ChatError, Completion

FORMATS = ("json_schema", "json_object_schema", "json_object", "none")
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
                 max_concurrency: int = 2, max_tokens: int = 1024, temperature: float = 0.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
        self._slots = _semaphore(self.base_url, max_concurrency)

    def close(self) -> None:
        self._client.close()

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
            try:
                return self._client.post("/chat/completions", json=body)
            except httpx.HTTPError as exc:
                raise ChatError(f"{type(exc).__name__} talking to {self.base_url}: {exc}") from exc


def _completion(response: httpx.Response) -> Completion:
    try:
        data = response.json()
        text = data["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ChatError(f"not a chat completion: {response.text[:300]}") from exc
    usage = data.get("usage") or {}
    return Completion(text=text, prompt_tokens=usage.get("prompt_tokens"),
                      completion_tokens=usage.get("completion_tokens"))
