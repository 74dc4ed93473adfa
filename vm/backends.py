"""Host-side backends: where host stimulus arrives and how it reaches a device.

Stimulus (UART bytes, packets) arrives on the host side of the main loop when the host's
REALTIME passes its `host_ns`; the backend buffers it. A frontend device takes it at the
guest side's async point, and only through the nondeterminism choke point (a CHAR_READ or NET
value), so record/replay can log it or play it back. The backend's buffer is host-side state:
neither saved nor digested.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vm.clock import HostTime, TimerList
from vm.hostmodel import HostModel
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
    """The host end of a NIC: whole packets from the host, one per delivery.

    Packets the guest sends go the other way, through `transmit`, to the host network
    attached behind the backend (`attach_network`, e.g. vm.slirp), or nowhere."""

    kind = NondetKind.NET

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.pending: deque[bytes] = deque()
        self.can_receive: Callable[[], int] | None = None
        self.receive: Callable[[bytes], None] | None = None
        self.network: Callable[[bytes], None] | None = None

    def connect(self, *, can_receive: Callable[[], int], receive: Callable[[bytes], None]) -> None:
        """`can_receive` returns how many packets the frontend can take now."""
        self.can_receive = can_receive
        self.receive = receive

    def attach_network(self, transmit: Callable[[bytes], None]) -> None:
        """Put a host network behind the backend: `transmit` takes each guest packet."""
        self.network = transmit

    def transmit(self, packet: bytes) -> None:
        """A packet from the guest to the host. Outgoing traffic never changes guest state
        by itself, so it passes no choke point (QEMU's filter-replay ignores it too); what
        the host sends back arrives like any other input. With no network attached the
        packet is dropped, as with QEMU's `-net none`."""
        if self.network is not None:
            self.network(packet)

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


class BlockBackend:
    """The host end of a disk (QEMU's block layer under its blkreplay filter): it decides
    only *when* each request completes. The disk's content is the device's (guest state:
    see vm.devices.block), so nothing here is saved or digested.

    `submit(request_id)` starts a host request that takes `host.block_latency_ns(n)` of
    REALTIME, `n` counting the host's own submissions. One REALTIME timer, run on the main
    loop's host side, moves due ids to `completed` (in due order, so completion order is
    the host's choice, as with a real disk). At the guest side's async point `deliver`
    hands each to the device as a BLOCK value through the choke point carrying the request
    id (QEMU's BLOCK async event), so record logs which request completed where and replay
    takes it from the log. No main-loop hook is needed: `_run_host_work` runs REALTIME
    timers, an idle hart lets host time pass to the next REALTIME deadline, and the async
    point delivers from every backend with `has_input`.
    """

    kind = NondetKind.BLOCK

    def __init__(
        self, name: str, index: int, *, host: HostModel, host_time: HostTime, timers: TimerList
    ) -> None:
        self.name = name
        self.index = index  # the backend index part 3 logs with each BLOCK value
        self.host = host
        self.host_time = host_time
        self.submitted = 0  # host requests so far: the index into the host's latency stream
        # Host requests in progress, a heap of (due REALTIME ns, submission number, id).
        self.in_flight: list[tuple[int, int, int]] = []
        self.completed: deque[int] = deque()  # ids the host finished, not yet delivered
        self.complete: Callable[[int], bool] | None = None
        self.timer = timers.new(self._due)

    def connect(self, *, complete: Callable[[int], bool]) -> None:
        """Attach the frontend: `complete(request_id)` finishes a request in the guest."""
        self.complete = complete

    def submit(self, request_id: int) -> None:
        """Start the host's I/O for `request_id` (called from the guest's COMMAND store,
        or by post_load for a request a snapshot saved in flight)."""
        due = self.host_time.realtime_ns + self.host.block_latency_ns(self.submitted)
        heapq.heappush(self.in_flight, (due, self.submitted, request_id))
        self.submitted += 1
        self._arm()

    def cancel_all(self) -> None:
        """Forget every request (a device reset, or a loadvm replacing the guest's
        requests); the latency stream goes on, as a host's disk would."""
        self.in_flight.clear()
        self.completed.clear()
        self._arm()

    def arrive(self, payload: bytes) -> None:
        """Stimulus on this channel: a disk takes no host input but its own completions,
        so it is dropped (as on a channel nothing listens on)."""
        del payload

    def has_input(self) -> bool:
        return bool(self.completed)

    def deliver(self, nondet: Nondet) -> bool:
        """At the async point: complete what the host finished, one BLOCK value each.

        The device completes the id the choke point returns, which in replay is the
        logged one; that id is then dropped from the host's queues wherever it is, so a
        live completion never reaches the guest twice. At most the ids queued on entry
        are delivered, so a replay port that keeps supplying ids cannot spin here."""
        if not self.completed or self.complete is None:
            return False
        for _ in range(len(self.completed)):
            request_id = nondet.value(self.kind, self.completed.popleft, channel=self.index)
            self.forget(request_id)
            self.complete(request_id)
        return True

    def forget(self, request_id: int) -> None:
        """Drop `request_id` from the host's queues (delivered, or completed from a replay log)."""
        if request_id in self.completed:
            self.completed.remove(request_id)
        kept = [entry for entry in self.in_flight if entry[2] != request_id]
        if len(kept) != len(self.in_flight):
            heapq.heapify(kept)
            self.in_flight = kept
            self._arm()

    def _due(self) -> None:
        """REALTIME timer, host side: finished requests wait for the async point."""
        now = self.host_time.realtime_ns
        while self.in_flight and self.in_flight[0][0] <= now:
            self.completed.append(heapq.heappop(self.in_flight)[2])
        self._arm()

    def _arm(self) -> None:
        if self.in_flight:
            self.timer.mod(self.in_flight[0][0])
        else:
            self.timer.cancel()


Backend = CharBackend | NetBackend | BlockBackend
