"""One embedding cache for every labeler: least recently used images go first, bounded in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

Value = TypeVar("Value")


@dataclass(frozen=True)
class CacheStats:
    images: int
    bytes: int
    limit_bytes: int
    hits: int
    misses: int


class EmbeddingCache(Generic[Value]):
    """Image key -> features, thread-safe. An entry larger than the whole bound is not kept."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[str, tuple[Value, int]] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[Value]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def peek(self, key: str) -> Optional[Value]:
        """The entry without counting a hit or a miss: the lane's look before it embeds."""
        with self._lock:
            entry = self._entries.get(key)
            return entry[0] if entry else None

    def put(self, key: str, value: Value, size: int) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.limit_bytes:
                return
            while self._bytes + size > self.limit_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
            self._entries[key] = (value, size)
            self._bytes += size

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._entries), self._bytes, self.limit_bytes, self._hits, self._misses)
