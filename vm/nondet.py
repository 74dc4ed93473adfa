"""The nondeterminism choke point (pinned): every host value that reaches the guest.

HOST clock reads, entropy, and char/packet/block input all pass through `Nondet.value`.
With no port installed the value passes straight through; part 3's record/replay engine
installs a port that records each value, or plays it back from a log (dropping the live
host value, which must then never reach the guest). Devices never call the host model
directly for a guest-visible value: they call this, through their host interface.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class NondetKind(enum.Enum):
    """What kind of host value it is; persisted names (logs), so string-valued."""

    CLOCK_HOST = "clock-host"  # a read of the HOST (wall) clock, in ns
    RANDOM = "random"  # entropy bytes
    CHAR_READ = "char-read"  # bytes arriving at a character backend
    NET = "net"  # a packet arriving at a network backend
    BLOCK = "block"  # a block request completing


class NondetPort(Protocol):
    """What record/replay installs: it sees every value, and may supply it instead."""

    def value(self, kind: NondetKind, channel: int, produce: Callable[[], T]) -> T: ...


class Nondet:
    """The choke point. `value(kind, produce)` is the only way host data enters the guest."""

    def __init__(self) -> None:
        self.port: NondetPort | None = None
        self.counts: dict[NondetKind, int] = dict.fromkeys(NondetKind, 0)

    def value(self, kind: NondetKind, produce: Callable[[], T], *, channel: int = 0) -> T:
        """The host value of `kind` for `channel` (a backend index): produced by the host
        now, or recorded, or replayed, depending on the installed port."""
        self.counts[kind] += 1
        if self.port is None:
            return produce()
        return self.port.value(kind, channel, produce)
