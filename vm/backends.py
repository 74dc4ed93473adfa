"""Host-side backends: where host stimulus arrives and how it reaches a device.

Stimulus (UART bytes, packets) arrives on the host side of the main loop when the host's
REALTIME passes its `host_ns`; the backend buffers it. A frontend device takes it at the
guest side's async point, and only through the nondeterminism choke point (a CHAR_READ or NET
value), so record/replay can log it or play it back. The backend's buffer is host-side state:
neither saved nor digested.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vm.nondet import Nondet, NondetKind


@dataclass(frozen=True, slots=True, order=True)
class Stimulus:
    """Host input: `payload` arrives at backend `channel` when REALTIME reaches `host_ns`."""

    host_ns: int
    channel: str
    payload: bytes


class CharBackend:
    """The host end of a character device (QEMU's chardev): a byte stream from the host."""

    kind = NondetKind.CHAR_READ

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index  # the backend index part 3 logs with each CHAR_READ
        self.pending = bytearray()
        self.can_receive: Callable[[], int] | None = None
        self.receive: Callable[[bytes], None] | None = None

    def connect(self, *, can_receive: Callable[[], int], receive: Callable[[bytes], None]) -> None:
        """Attach the frontend: how many bytes it takes now, and where they go."""
        self.can_receive = can_receive
        self.receive = receive

    def arrive(self, payload: bytes) -> None:
        self.pending += payload

    def has_input(self) -> bool:
        return bool(self.pending)

    def deliver(self, nondet: Nondet) -> bool:
        """At the async point: hand the frontend what it can take. True if it took any."""
        if not self.pending or self.can_receive is None or self.receive is None:
            return False
        room = self.can_receive()
        if room <= 0:
            return False
        data = nondet.value(self.kind, lambda: self._take(room), channel=self.index)
        if data:
            self.receive(data)
        return bool(data)

    def _take(self, count: int) -> bytes:
        data = bytes(self.pending[:count])
        del self.pending[:count]
        return data


class NetBackend:
    """The host end of a NIC: whole packets from the host, one per delivery."""

    kind = NondetKind.NET

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.pending: deque[bytes] = deque()
        self.can_receive: Callable[[], int] | None = None
        self.receive: Callable[[bytes], None] | None = None

    def connect(self, *, can_receive: Callable[[], int], receive: Callable[[bytes], None]) -> None:
        """`can_receive` returns how many packets the frontend can take now."""
        self.can_receive = can_receive
        self.receive = receive

    def arrive(self, payload: bytes) -> None:
        self.pending.append(payload)

    def has_input(self) -> bool:
        return bool(self.pending)

    def deliver(self, nondet: Nondet) -> bool:
        if not self.pending or self.can_receive is None or self.receive is None:
            return False
        if self.can_receive() <= 0:
            return False
        packet = nondet.value(self.kind, self.pending.popleft, channel=self.index)
        self.receive(packet)
        return True


Backend = CharBackend | NetBackend
