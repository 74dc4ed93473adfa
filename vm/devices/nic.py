"""detfuzz's NIC: a small DMA network card of its own (built-in machine only).

It sits where QEMU `virt` puts its third virtio-mmio transport (0x1000_3000, PLIC source 3)
but is not virtio. Its host end is the NetBackend named after the device (`nic0`: also the
stimulus channel), with a slirp-like host network (vm.slirp) behind it unless the spec says
`netdev="none"`.

Register map (32-bit registers; only aligned 4-byte accesses are valid, other widths
fault; offsets without a register in the 4 KiB window read 0 and ignore writes):

| offset | name         | access | meaning                                                  |
|--------|--------------|--------|----------------------------------------------------------|
| 0x00   | MAGIC        | RO     | 0x4349_4E44 ("DNIC" in memory order)                     |
| 0x04   | VERSION      | RO     | 1                                                        |
| 0x08   | SLOT_SIZE    | RO     | 2048: bytes per RX ring slot                             |
| 0x0C   | RING_MAX     | RO     | 256: the most slots an RX ring may have                  |
| 0x10   | CTRL         | RW     | bit 0 RX_ENABLE (other bits read 0)                      |
| 0x14   | INT_STATUS   | R/W1C  | bit 0 RX, bit 1 TX_DONE, bit 2 TX_ERROR                  |
| 0x18   | INT_MASK     | RW     | status bits that drive the interrupt line                |
| 0x20   | RX_RING_BASE | RW     | address of slot 0 (bits 1:0 read 0); a write restarts    |
|        |              |        | the ring at slot 0                                       |
| 0x24   | RX_RING_SIZE | RW     | slots in the ring, 0..RING_MAX (larger writes store      |
|        |              |        | RING_MAX); a write restarts the ring at slot 0           |
| 0x28   | RX_HEAD      | RO     | the slot the next packet goes to                         |
| 0x2C   | RX_PACKETS   | RO     | packets written to the ring since reset (mod 2**32)      |
| 0x30   | TX_ADDR      | RW     | address of the packet to send                            |
| 0x34   | TX_LEN       | RW     | its length, 1..TX_MAX (2044) bytes                       |
| 0x38   | TX_DOORBELL  | WO     | any write sends the packet (reads 0)                     |
| 0x3C   | TX_PACKETS   | RO     | packets sent since reset (mod 2**32)                     |

RX ring in guest RAM: slot k starts at RX_RING_BASE + k * SLOT_SIZE. Its first word is the
descriptor, the packet follows (at most RX_MAX = 2044 bytes):

    bit 31  FULL       the slot holds a packet for the guest (so `bltz` tests it)
    bit 30  TRUNCATED  the packet was longer than RX_MAX and was cut there
    15:0    length     bytes of packet in the slot

The device fills slots in ring order from RX_HEAD and never overwrites a FULL slot; the
guest hands a slot back by clearing FULL (storing 0 to its descriptor). While the slot at
RX_HEAD is FULL, RX_ENABLE is off, or the ring is empty or not wholly in RAM, packets wait
in the host backend: none is lost, and delivery resumes at the first async point after the
guest frees the slot. Each packet goes into RAM (descriptor and data, through the bus's one
write path) only when the backend delivers it at the async point, as a NET value through the
nondeterminism choke point: never from a host timer.

TX: the guest writes TX_ADDR and TX_LEN and rings TX_DOORBELL. The device reads the packet
from RAM during the doorbell store (guest-synchronous, so deterministic) and hands it to the
backend; it completes at once, setting TX_DONE (or TX_ERROR, and nothing is sent, for a
length of 0 or over TX_MAX or a buffer not wholly in RAM).

The interrupt line is high while INT_STATUS & INT_MASK is non-zero.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, cast

from vm.backends import NetBackend
from vm.config import ConfigError, DeviceSpec
from vm.devices import Device, DeviceHost, IrqLine
from vm.memory import Bus
from vm.slirp import DEFAULT_ECHO_DELAY_NS, SlirpHost, SlirpNetwork
from vm.vmstate import U32, VMStateDescription

KIND = "nic"
DEFAULT_BASE = 0x1000_3000  # QEMU virt's virtio-mmio slot 2 (VIRT_VIRTIO + 2 * 0x1000)
DEFAULT_IRQ = 3  # that slot's PLIC source (VIRTIO_IRQ + 2)
DEFAULT_NAME = "nic0"
WINDOW_SIZE = 0x1000

# Register offsets.
MAGIC = 0x00
VERSION = 0x04
SLOT_SIZE_REG = 0x08
RING_MAX_REG = 0x0C
CTRL = 0x10
INT_STATUS = 0x14
INT_MASK = 0x18
RX_RING_BASE = 0x20
RX_RING_SIZE = 0x24
RX_HEAD = 0x28
RX_PACKETS = 0x2C
TX_ADDR = 0x30
TX_LEN = 0x34
TX_DOORBELL = 0x38
TX_PACKETS = 0x3C

MAGIC_VALUE = 0x4349_4E44  # b"DNIC" read as a little-endian word
VERSION_VALUE = 1
SLOT_SIZE = 2048
RING_MAX = 256
DESC_SIZE = 4
RX_MAX = SLOT_SIZE - DESC_SIZE  # packet bytes a slot holds
TX_MAX = RX_MAX  # so that an echoed packet always fits a slot

CTRL_RX_ENABLE = 1 << 0

INT_RX = 1 << 0  # a packet was written to the ring
INT_TX_DONE = 1 << 1  # a doorbell sent a packet
INT_TX_ERROR = 1 << 2  # a doorbell found a bad length or buffer and sent nothing
INT_ALL = INT_RX | INT_TX_DONE | INT_TX_ERROR

DESC_FULL = 1 << 31
DESC_TRUNCATED = 1 << 30
DESC_LENGTH = 0xFFFF

MASK32 = 0xFFFF_FFFF

# Spec options: which host network sits behind the backend, and its parameters.
NETDEV_SLIRP = "slirp"
NETDEV_NONE = "none"  # host stimulus only; transmitted packets go nowhere
OPTIONS = frozenset({"netdev", "echo_delay_ns", "beacon_interval_ns"})

# Read-only registers whose value never changes.
_CONSTANTS = {
    MAGIC: MAGIC_VALUE,
    VERSION: VERSION_VALUE,
    SLOT_SIZE_REG: SLOT_SIZE,
    RING_MAX_REG: RING_MAX,
}
# Registers that read an attribute as it stands.
_READABLE = {
    CTRL: "ctrl",
    INT_STATUS: "int_status",
    INT_MASK: "int_mask",
    RX_RING_BASE: "rx_ring_base",
    RX_RING_SIZE: "rx_ring_size",
    RX_HEAD: "rx_head",
    RX_PACKETS: "rx_packets",
    TX_ADDR: "tx_addr",
    TX_LEN: "tx_len",
    TX_PACKETS: "tx_packets",
}


class NicHost(DeviceHost, SlirpHost, Protocol):
    """The parts of the machine the NIC uses beyond DeviceHost: the bus (DMA), its
    network backend, and (SlirpHost) EXTERNAL timers for the host network behind it."""

    @property
    def bus(self) -> Bus: ...

    def net_backend(self, name: str) -> NetBackend: ...


def default_spec(name: str = DEFAULT_NAME) -> DeviceSpec:
    """The NIC where QEMU virt's third virtio-mmio slot is."""
    return DeviceSpec(KIND, name, DEFAULT_BASE, irq=DEFAULT_IRQ)


def _unconnected(level: bool) -> None:  # noqa: FBT001 - a line level
    del level


def _int_option(spec: DeviceSpec, key: str, default: int) -> int:
    value = spec.option(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"device {spec.name}: option {key} must be an int >= 0, got {value!r}")
    return value


class Nic(Device):
    """The NIC: an RX ring and a one-packet TX doorbell over guest RAM (see the module)."""

    kind = KIND
    size = WINDOW_SIZE
    access_sizes = frozenset({4})

    # Every guest-visible register. The interrupt line's level is not saved: it is a
    # function of int_status & int_mask (post_load re-derives what the line remembers),
    # and the PLIC saves the levels it has seen.
    VMSTATE = VMStateDescription(
        "nic",
        version=1,
        minimum_version=1,
        fields=[
            U32("ctrl"),
            U32("int_status"),
            U32("int_mask"),
            U32("rx_ring_base"),
            U32("rx_ring_size"),
            U32("rx_head"),
            U32("rx_packets"),
            U32("tx_addr"),
            U32("tx_len"),
            U32("tx_packets"),
        ],
        post_load=lambda nic: nic.restore_line_level(),
    )
    # The backend (and the packets waiting in it) and the host network are the host's.
    HOST_SIDE: ClassVar[frozenset[str]] = frozenset({"backend", "network"})

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        unknown = sorted({key for key, _ in spec.options} - OPTIONS)
        if unknown:  # a misspelt option would otherwise silently keep its default
            raise ConfigError(f"device {spec.name}: unknown options {unknown}")
        self.irq = host.irq_line(spec.irq) if spec.irq is not None else IrqLine(_unconnected)
        machine = cast(NicHost, host)
        self.backend = machine.net_backend(spec.name)
        self.backend.connect(can_receive=self._can_receive, receive=self._receive)
        netdev = spec.option("netdev", NETDEV_SLIRP)
        self.network: SlirpNetwork | None = None
        if netdev == NETDEV_SLIRP:
            self.network = SlirpNetwork(
                machine,
                self.backend,
                echo_delay_ns=_int_option(spec, "echo_delay_ns", DEFAULT_ECHO_DELAY_NS),
                beacon_interval_ns=_int_option(spec, "beacon_interval_ns", 0),
            )
        elif netdev != NETDEV_NONE:
            raise ConfigError(f"device {spec.name}: netdev must be 'slirp' or 'none': {netdev!r}")
        self.reset()

    @property
    def _bus(self) -> Bus:
        return cast(NicHost, self.host).bus

    def reset(self) -> None:
        """Power-on state: RX off, no ring, nothing pending. Host-side state (packets
        waiting in the backend, the host network's schedule) is the host's and stays."""
        self.ctrl = 0
        self.int_status = 0
        self.int_mask = 0
        self.rx_ring_base = 0
        self.rx_ring_size = 0
        self.rx_head = 0
        self.rx_packets = 0
        self.tx_addr = 0
        self.tx_len = 0
        self.tx_packets = 0
        self._update_irq()

    def restore_line_level(self) -> None:
        """post_load: the line remembers the level derived from the loaded registers, as
        it did when saved. Only the remembered level: driving the line would reach into
        the PLIC, which saved the levels it had seen and may load after this device."""
        self.irq.level = bool(self.int_status & self.int_mask)

    # -- MMIO -----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        del size  # always 4 (access_sizes), aligned: the bus splits misaligned loads
        constant = _CONSTANTS.get(offset)
        if constant is not None:
            return constant
        attr = _READABLE.get(offset)
        return 0 if attr is None else int(getattr(self, attr))

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        if offset == CTRL:
            self.ctrl = value & CTRL_RX_ENABLE
        elif offset == INT_STATUS:
            self.int_status &= ~value & MASK32
            self._update_irq()
        elif offset == INT_MASK:
            self.int_mask = value & INT_ALL
            self._update_irq()
        elif offset == RX_RING_BASE:
            # Word-aligned so descriptors can be read with lw.
            self.rx_ring_base = value & ~3 & MASK32
            self.rx_head = 0
        elif offset == RX_RING_SIZE:
            self.rx_ring_size = min(value, RING_MAX)
            self.rx_head = 0
        elif offset == TX_ADDR:
            self.tx_addr = value
        elif offset == TX_LEN:
            self.tx_len = value
        elif offset == TX_DOORBELL:
            self._transmit()
        # Read-only registers and offsets without a register ignore writes.

    # -- RX: the backend calls these at the async point -----------------------------------

    def _ring_usable(self) -> bool:
        end = self.rx_ring_size * SLOT_SIZE
        return (
            bool(self.ctrl & CTRL_RX_ENABLE)
            and self.rx_ring_size > 0
            and self._bus.is_ram(self.rx_ring_base, end)
        )

    def _slot(self, index: int) -> int:
        return self.rx_ring_base + index * SLOT_SIZE

    def _can_receive(self) -> int:
        """How many packets the device takes now: 1 while the slot at RX_HEAD is free. It
        reads only registers and guest RAM, so record and replay decide alike."""
        if not self._ring_usable():
            return 0
        descriptor = int.from_bytes(self._bus.read_bytes(self._slot(self.rx_head), 4), "little")
        return 0 if descriptor & DESC_FULL else 1

    def _receive(self, packet: bytes) -> None:
        """A packet that passed the choke point: DMA it into the slot at RX_HEAD."""
        if not self._can_receive():
            # The backend asks can_receive first; anything else delivering here (a replay
            # engine out of step) would overwrite a packet the guest has not read.
            raise RuntimeError(f"{self.name}: packet delivered while the RX ring is full")
        data = packet[:RX_MAX]
        descriptor = DESC_FULL | len(data)
        if len(packet) > RX_MAX:
            descriptor |= DESC_TRUNCATED
        # Descriptor and data in one write: the guest sees both at the same boundary.
        self._bus.write_bytes(self._slot(self.rx_head), descriptor.to_bytes(4, "little") + data)
        self.rx_head = (self.rx_head + 1) % self.rx_ring_size
        self.rx_packets = (self.rx_packets + 1) & MASK32
        self.int_status |= INT_RX
        self._update_irq()

    # -- TX: at the doorbell store ---------------------------------------------------------

    def _transmit(self) -> None:
        length = self.tx_len
        if not 0 < length <= TX_MAX or not self._bus.is_ram(self.tx_addr, length):
            self.int_status |= INT_TX_ERROR
        else:
            # Read now, inside the guest's store: the packet is what RAM holds at this
            # icount, whatever the host does with it later.
            self.backend.transmit(self._bus.read_bytes(self.tx_addr, length))
            self.tx_packets = (self.tx_packets + 1) & MASK32
            self.int_status |= INT_TX_DONE
        self._update_irq()

    def _update_irq(self) -> None:
        # Always drive the line, never compare with its cached level: after a loadvm the
        # cache is stale, and a device that skips "unchanged" levels would then behave
        # differently from one that never saved and loaded.
        self.irq.set(bool(self.int_status & self.int_mask))
