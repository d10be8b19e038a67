"""Which replica owns an image: rendezvous hashing over the replicas' addresses.

Every replica computes the same owner for an image from the same address list, so all clicks
on an image reach one replica and its embedding is computed once for the team, whichever
replica the Service hands a click to. A replica that receives a click it does not own passes it
on (one hop on the pod network); one that cannot reach the owner answers itself. Addresses are
host:port; a host name (the headless Service) stands for every address it resolves to, looked
up again after a while so that replicas coming and going are followed.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from typing import Callable, Sequence

RESOLVE_EVERY_SECONDS = 10.0


def owner(key: str, replicas: Sequence[str]) -> str:
    return max(replicas, key=lambda replica: hashlib.sha256(f"{replica}|{key}".encode()).digest())


def resolve(address: str) -> list[str]:
    host, _, port = address.rpartition(":")
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)}
    except OSError:
        return []
    return [f"{ip}:{port}" for ip in sorted(found)]


class Replicas:
    def __init__(self, self_address: str, peers: Sequence[str], resolver: Callable[[str], list[str]] = resolve,
                 clock: Callable[[], float] = time.monotonic):
        self.self_address = self_address
        self._peers = tuple(peers)
        self._resolver = resolver
        self._clock = clock
        self._known: tuple[str, ...] = (self_address,)
        self._resolved_at = float("-inf")
        self._lock = threading.Lock()

    def all(self) -> tuple[str, ...]:
        with self._lock:
            if self._clock() - self._resolved_at >= RESOLVE_EVERY_SECONDS:
                found = {address for peer in self._peers for address in self._resolver(peer)}
                self._known = tuple(sorted(found | {self.self_address}))
                self._resolved_at = self._clock()
            return self._known

    def owner(self, key: str) -> str:
        return owner(key, self.all())
