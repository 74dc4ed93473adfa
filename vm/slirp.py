"""A slirp-like host network behind a NIC's backend: a tiny host that answers the guest.

QEMU's `-netdev user` (slirp) is an IP stack inside the host process. detfuzz's is smaller
still: two behaviours a guest program can test against and the fuzzer can schedule around.

- **echo**: every Ethernet frame the guest transmits comes back `echo_delay_ns` of guest
  (VIRTUAL) time later with its destination and source addresses swapped, as a host
  answering it would. A frame shorter than an Ethernet header (14 bytes) is dropped.
- **beacon** (off unless `beacon_interval_ns` > 0): every `beacon_interval_ns` of guest time
  the host broadcasts a numbered frame the guest never asked for (from slirp's gateway
  address, local experimental ethertype 0x88B5, payload `detfuzz-beacon` + a little-endian
  u32 sequence number).

Replay rules. The network's timers are VIRTUAL timers with the EXTERNAL attribute, like
QEMU's slirp timers: paced by guest execution, but they neither bound a CPU slice nor run
behind a checkpoint; the main loop fires them on its host side, wherever that happens to be
(so where the guest sees a reply depends on the host: that is what record/replay logs). A
timer therefore never touches the guest: its callback only `arrive`s the packet in the
NetBackend, which hands it to the NIC at the next async point through the nondeterminism
choke point (a NET value). Everything here is host-side state: not saved, not digested, free
to differ between record and replay without the guest noticing.

A guest that waits in WFI for a reply must keep virtual time moving (a CLINT timer, say):
the hart idling warps only to non-EXTERNAL deadlines, as QEMU's `-icount sleep=off` does.

The network keeps at most BACKLOG_MAX of its own packets waiting in the backend and drops
what it generates beyond that (counted in `dropped`), as a host does when a guest stops
reading; host stimulus on the same channel bypasses the network and is never dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from vm.backends import NetBackend
from vm.clock import ClockKind, Timer

ETH_ADDR_LEN = 6
ETH_HEADER_LEN = 14  # destination, source, ethertype
HOST_MAC = bytes.fromhex("52550a000202")  # slirp's gateway (10.0.2.2) address
BROADCAST_MAC = b"\xff" * ETH_ADDR_LEN
BEACON_ETHERTYPE = 0x88B5  # IEEE 802 local experimental ethertype 1
BEACON_TAG = b"detfuzz-beacon"

DEFAULT_ECHO_DELAY_NS = 50_000  # 50 us of guest time between a frame and its echo
# The most packets the network leaves undelivered in the backend before it drops its own
# (a beacon source would otherwise grow the queue without bound while RX is off).
BACKLOG_MAX = 64


class SlirpHost(Protocol):
    """What the network needs from the machine: EXTERNAL timers and the virtual clock."""

    def new_timer(
        self, clock: ClockKind, callback: Callable[[], None], *, external: bool = False
    ) -> Timer: ...

    def virtual_ns(self) -> int: ...


def echo_reply(frame: bytes) -> bytes | None:
    """The host's answer to `frame`: destination and source swapped, the rest unchanged;
    None for a frame too short to have an Ethernet header."""
    if len(frame) < ETH_HEADER_LEN:
        return None
    dst, src = frame[:ETH_ADDR_LEN], frame[ETH_ADDR_LEN : 2 * ETH_ADDR_LEN]
    return src + dst + frame[2 * ETH_ADDR_LEN :]


def beacon_frame(seq: int) -> bytes:
    """Beacon number `seq` (mod 2**32), broadcast from the gateway."""
    return (
        BROADCAST_MAC
        + HOST_MAC
        + BEACON_ETHERTYPE.to_bytes(2, "big")
        + BEACON_TAG
        + (seq & 0xFFFF_FFFF).to_bytes(4, "little")
    )


class SlirpNetwork:
    """The host network attached behind one NetBackend (all of it host-side)."""

    def __init__(
        self,
        host: SlirpHost,
        backend: NetBackend,
        *,
        echo_delay_ns: int = DEFAULT_ECHO_DELAY_NS,
        beacon_interval_ns: int = 0,
    ) -> None:
        if echo_delay_ns < 0:
            raise ValueError(f"echo_delay_ns must be >= 0, got {echo_delay_ns}")
        if beacon_interval_ns < 0:
            raise ValueError(f"beacon_interval_ns must be >= 0, got {beacon_interval_ns}")
        self.host = host
        self.backend = backend
        self.echo_delay_ns = echo_delay_ns
        self.beacon_interval_ns = beacon_interval_ns
        # Echoes not yet due, (virtual deadline, frame): in deadline order, because the delay
        # is fixed and virtual time never goes back.
        self.replies: deque[tuple[int, bytes]] = deque()
        self.received = 0  # frames the guest transmitted
        self.sent = 0  # packets the network put into the backend
        self.dropped = 0  # packets it generated while the backlog was full
        self.beacons = 0  # beacon sequence number: beacons generated so far
        # Created unconditionally, in a fixed order, so every machine built from one
        # configuration has the same timer lists.
        self.echo_timer = host.new_timer(ClockKind.VIRTUAL, self._echo_due, external=True)
        self.beacon_timer = host.new_timer(ClockKind.VIRTUAL, self._beacon_due, external=True)
        self.beacon_next_ns: int | None = None
        if beacon_interval_ns:
            self.beacon_next_ns = host.virtual_ns() + beacon_interval_ns
            self.beacon_timer.mod(self.beacon_next_ns)
        backend.attach_network(self.transmit)

    def transmit(self, frame: bytes) -> None:
        """A frame from the guest (called at the NIC's doorbell, inside the guest's
        instruction): only schedule the answer. Nothing reaches the guest from here."""
        self.received += 1
        reply = echo_reply(frame)
        if reply is None:
            return
        due = self.host.virtual_ns() + self.echo_delay_ns
        self.replies.append((due, reply))
        if len(self.replies) == 1:
            self.echo_timer.mod(due)

    def _echo_due(self) -> None:
        """EXTERNAL timer, host side: hand every echo now due to the backend."""
        now = self.host.virtual_ns()
        while self.replies and self.replies[0][0] <= now:
            self._send(self.replies.popleft()[1])
        if self.replies:
            self.echo_timer.mod(self.replies[0][0])

    def _beacon_due(self) -> None:
        """EXTERNAL timer, host side: one beacon, then the next period. Periods the host
        loop slept through are skipped rather than sent in a burst."""
        assert self.beacon_next_ns is not None
        self._send(beacon_frame(self.beacons))
        self.beacons += 1
        interval = self.beacon_interval_ns
        late = self.host.virtual_ns() - self.beacon_next_ns
        self.beacon_next_ns += interval * (1 + max(0, late) // interval)
        self.beacon_timer.mod(self.beacon_next_ns)

    def _send(self, packet: bytes) -> None:
        if len(self.backend.pending) >= BACKLOG_MAX:
            self.dropped += 1
            return
        self.backend.arrive(packet)
        self.sent += 1
