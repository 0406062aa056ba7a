"""The `Chat` interface every generative model backend implements, and its registry.

A chat takes messages and a JSON schema for the reply and returns the reply's text; it knows
nothing of briefs. digest.summary wraps a chat into a summariser. `context_tokens` is what the
model can read in one call (prompt and reply together), when the backend knows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from store.registry import Registry


class ChatError(RuntimeError):
    """The model could not be asked (connection, timeout, HTTP error, runtime failure)."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Chat(Protocol):
    backend: str
    model: str
    max_tokens: int  # the reply's budget

    def complete(self, messages: list[dict], schema: dict, purpose: str) -> Completion: ...

    def context_tokens(self) -> int:
        """The model's context window in tokens: a setting, what the server reports, or a default."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` as the model counts them (or a conservative estimate)."""
        ...


def _load_builtin_chats() -> None:
    # Importing registers them; llama_cpp itself loads only when a LlamaCppChat is built.
    from embed.chat import llamacpp, openai  # noqa: F401


CHATS: Registry[Chat] = Registry("chat backend", ChatError, _load_builtin_chats)
