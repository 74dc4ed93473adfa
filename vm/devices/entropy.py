"""detfuzz's entropy device: random words from the host (built-in machine only).

It sits where QEMU `virt` puts its first virtio-mmio transport (0x1000_1000) but is not
virtio (virtio-rng is the nearest QEMU device).

Register map (32-bit registers; only aligned 4-byte accesses are valid, other widths fault;
offsets without a register in the 4 KiB window read 0 and ignore writes):

| offset | name   | access | meaning                                                        |
|--------|--------|--------|----------------------------------------------------------------|
| 0x00   | MAGIC  | RO     | 0x3047_4E52 ("RNG0" in memory order)                           |
| 0x04   | CTRL   | RW     | bit 0 ENABLE (reset 0; other bits read 0)                      |
| 0x08   | STATUS | RO     | bit 0 READY: DATA serves entropy (set exactly while enabled)   |
| 0x0C   | DATA   | RO     | while enabled: 32 fresh random bits from the host, one RANDOM  |
|        |        |        | value through the choke point per read; while disabled: 0,     |
|        |        |        | and nothing is consumed                                        |
| 0x10   | COUNT  | RW     | DATA words served since reset (mod 2**32); a write sets it     |

Every entropy word passes the nondeterminism choke point (`NondetKind.RANDOM`, QEMU's
EVENT_RANDOM from qemu_guest_getrandom): live, the host model's `entropy(index, 4)` with
the device's own request counter as the index; in replay, the logged bytes. The read
happens inside the guest's load, so the icount alone decides when a word is taken. A
misaligned word load is split by the bus into the two aligned words around it, so one
that covers DATA takes a word as any DATA read does.

Interrupt: none. The host's pool never runs dry in this model, so entropy is served on
the read itself and a "data ready" line would simply follow ENABLE, telling the guest
nothing STATUS does not; the slot's PLIC source (1) is left unconnected, and `default_spec`
gives no irq.

State: CTRL and COUNT are guest state (VMSTATE). `host_requests`, the position in the
host's entropy stream, is the host's (HOST_SIDE): a guest reset does not rewind it and a
snapshot does not carry it, exactly as a real host's /dev/urandom does not replay old bytes
after a guest reset or loadvm; a replay takes the bytes from the log anyway.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, cast

from vm.config import DeviceSpec
from vm.devices import Device, DeviceHost
from vm.hostmodel import HostModel
from vm.nondet import Nondet, NondetKind
from vm.vmstate import U32, Bool, VMStateDescription

KIND = "entropy"
DEFAULT_BASE = 0x1000_1000  # QEMU virt's virtio-mmio slot 0 (VIRT_VIRTIO)
DEFAULT_NAME = "entropy"
WINDOW_SIZE = 0x1000

# Register offsets.
MAGIC = 0x00
CTRL = 0x04
STATUS = 0x08
DATA = 0x0C
COUNT = 0x10

MAGIC_VALUE = 0x3047_4E52  # b"RNG0" read as a little-endian word
CTRL_ENABLE = 1 << 0
STATUS_READY = 1 << 0
WORD_BYTES = 4

MASK32 = 0xFFFF_FFFF


class EntropyHost(DeviceHost, Protocol):
    """The parts of the machine the device uses beyond DeviceHost: the choke point and the
    host model behind it."""

    @property
    def nondet(self) -> Nondet: ...

    @property
    def host(self) -> HostModel: ...


def default_spec(name: str = DEFAULT_NAME) -> DeviceSpec:
    """The entropy device where QEMU virt's first virtio-mmio slot is (no interrupt)."""
    return DeviceSpec(KIND, name, DEFAULT_BASE)


class EntropyDevice(Device):
    kind = KIND
    size = WINDOW_SIZE
    access_sizes = frozenset({4})

    VMSTATE = VMStateDescription(
        "entropy",
        version=1,
        minimum_version=1,
        fields=[Bool("enabled"), U32("words_served")],
    )
    # The host's entropy stream position (see the module docstring).
    HOST_SIDE: ClassVar[frozenset[str]] = frozenset({"host_requests"})

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.host_requests = 0  # entropy requests the host has answered (its stream index)
        self.reset()

    def reset(self) -> None:
        """Power-on state: disabled, nothing served. The host's stream position stays."""
        self.enabled = False
        self.words_served = 0

    # -- MMIO -----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        del size  # always 4 (access_sizes), aligned: the bus splits misaligned loads
        if offset == MAGIC:
            return MAGIC_VALUE
        if offset == CTRL:
            return CTRL_ENABLE if self.enabled else 0
        if offset == STATUS:
            return STATUS_READY if self.enabled else 0
        if offset == DATA:
            return self._data()
        if offset == COUNT:
            return self.words_served
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        if offset == CTRL:
            self.enabled = bool(value & CTRL_ENABLE)
        elif offset == COUNT:
            self.words_served = value & MASK32
        # Read-only registers and offsets without a register ignore writes.

    # -- entropy --------------------------------------------------------------------------

    def _data(self) -> int:
        if not self.enabled:
            return 0
        data = cast(EntropyHost, self.host).nondet.value(NondetKind.RANDOM, self._from_host)
        self.words_served = (self.words_served + 1) & MASK32
        # Masked: a register is 32 bits whatever length of value a replay log hands back.
        return int.from_bytes(data, "little") & MASK32

    def _from_host(self) -> bytes:
        """The live value: the host's next entropy word. Called only when the choke point
        wants the host's answer (never in replay), so only then does the stream advance."""
        index = self.host_requests
        self.host_requests += 1
        return cast(EntropyHost, self.host).host.entropy(index, WORD_BYTES)
