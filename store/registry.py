"""One registry shape for every model backend: encoders, summarisers, transcribers, chats.

A backend registers a factory under a name (even the built-in ones, like plugins); callers build
one by name with keyword options. An unknown name fails with the list of what exists.

    ENCODERS = Registry("encoder", EncoderError)
    @ENCODERS.register("fake")
    class FakeEncoder(Encoder): ...
    ENCODERS.create("fake", dim=16)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, error: type[Exception] = LookupError,
                 load_builtins: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self.error = error
        self._factories: dict[str, Callable[..., T]] = {}
        self._load_builtins = load_builtins  # imports that register the built-in backends, run on first use

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[name] = factory
            return factory

        return decorate

    def names(self) -> list[str]:
        self._builtins()
        return sorted(self._factories)

    def create(self, name: str, **options) -> T:
        self._builtins()
        try:
            factory = self._factories[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None
        return factory(**options)

    def _builtins(self) -> None:
        if self._load_builtins is not None:
            load, self._load_builtins = self._load_builtins, None
            load()
