"""detfuzz's block device: a small DMA disk of its own (built-in machine only).

It sits where QEMU `virt` puts its second virtio-mmio transport (0x1000_2000, PLIC source 2)
but is not virtio. Its host end is the BlockBackend named after the device (vm.backends).

Register map (32-bit registers; only aligned 4-byte accesses are valid, other widths fault;
offsets without a register in the 4 KiB window read 0 and ignore writes):

| offset | name          | access | meaning                                                 |
|--------|---------------|--------|---------------------------------------------------------|
| 0x00   | MAGIC         | RO     | 0x304B_4C42 ("BLK0" in memory order)                    |
| 0x04   | CAPACITY      | RO     | disk size in 512-byte sectors                           |
| 0x08   | SECTOR        | RW     | first sector of the next request                        |
| 0x0C   | ADDRESS       | RW     | guest-physical address of its RAM buffer (any byte)     |
| 0x10   | COUNT         | RW     | sectors to transfer                                     |
| 0x14   | COMMAND       | WO     | 1 READ (disk to RAM), 2 WRITE (RAM to disk): submits    |
|        |               |        | the request SECTOR/ADDRESS/COUNT describe (reads 0)     |
| 0x18   | SUBMIT_RESULT | RO     | what the last COMMAND did: 0 accepted, else an error    |
| 0x1C   | LAST_ID       | RO     | id of the last accepted request (0 before the first)    |
| 0x20   | STATUS        | RO     | bit 0 BUSY (requests in flight), bit 1 DONE             |
|        |               |        | (completions waiting: the interrupt line), bit 2 FULL   |
|        |               |        | (no free slot), bit 3 ERROR (SUBMIT_RESULT != 0);       |
|        |               |        | bits 15:8 the number of requests in flight              |
| 0x24   | DONE_COUNT    | RO     | completions waiting for DONE_ACK                        |
| 0x28   | DONE_ID       | RO     | id of the oldest waiting completion (0 if none)         |
| 0x2C   | DONE_RESULT   | RO     | its result: 0 OK, else an error code                    |
| 0x30   | DONE_ACK      | WO     | any write retires the oldest completion, freeing its    |
|        |               |        | slot (ignored when none waits)                          |

Error codes, checked in this order: 1 BAD_COMMAND; 2 BUSY (all QUEUE_DEPTH slots taken);
3 BAD_SECTOR (COUNT is 0 or the sectors run past CAPACITY); 4 BAD_ADDRESS (the buffer is
not wholly in RAM: MMIO, ROM and unmapped space take no DMA). A rejected COMMAND takes no
id and no slot and raises no interrupt: the guest learns at once, from SUBMIT_RESULT. A
completion carries an error only for a request that cannot run, which only a hand-made
snapshot can hold; guest mistakes never raise a Python exception.

Requests. An accepted COMMAND takes the next request id at submission (a per-device counter
from 1, guest-visible through LAST_ID and DONE_ID), as QEMU's blkreplay does, and one of
QUEUE_DEPTH slots, which it keeps until the guest acknowledges its completion: requests in
flight plus completions waiting never exceed QUEUE_DEPTH. Requests complete in the order
the host finishes them, not in submission order.

Completion. The backend's host-side latency (REALTIME) decides when the host is done; the
id reaches the guest only at the guest side's async point, as a BLOCK value through the
nondeterminism choke point (QEMU's BLOCK async event carrying the request id), so in replay
the log says which request completes at which icount. `complete(request_id)` is the one
completion path, taking whatever id the choke point returned; only there does the device
move data: a READ copies its sectors into RAM through the bus's one write path (which
invalidates translated code it overwrites), a WRITE stores its data into the disk. Then the
completion joins the DONE queue and the interrupt line is driven.

A WRITE reads RAM at submission, not at completion. The COMMAND store happens at an exact
icount in every mode, while the completion point is the host's choice (reproduced in replay
only through the log). Read at completion, what reaches the disk would depend on host timing
whenever the guest touches the buffer while the request is in flight: the same guest under
another host seed would write other data, and a snapshot of the request would depend on RAM
the guest may have changed since. Captured in the COMMAND store, the data is a function of
guest execution alone and travels with the request (saved with it). The disk itself changes
at completion, so requests in flight together see each other in completion order (the host's
choice, which the log records), as on a real disk.

The disk image is device state, not host state. QEMU keeps it in a host file and, for
replay, opens it `snapshot=on` so that every run starts from the same content. Here the
image is made from the configuration (options `sectors`, default 128, and `pattern`, 0..255,
see `initial_image`; both in config_hash), so every machine of one configuration starts from
one disk, and afterwards only the guest changes it and can read back what it wrote: its
content is guest-visible. A snapshot without it would put RAM and CPU beside a disk from
the future, so it is saved (VMSTATE) and digested like RAM, and a guest reset keeps it.

Snapshots with requests in flight are taken, not refused. The requests in flight (with
their WRITE data) and the completions waiting are guest state: the guest submitted them and
sees them in LAST_ID and STATUS, so VMSTATE carries them. What the host had done for them
(its queues, its timer, its position in the latency stream) is host-side and not saved:
post_load hands the loaded requests to the backend again, as QEMU's virtio-blk restarts the
requests a migration saved. That arms only a REALTIME timer in the host, never logged and
never guest-visible; each completion still reaches the guest through the choke point, where
record logs it and replay takes it from the log, so a load behaves alike in record and replay.
Refusing savevm while a request is in flight (QEMU refuses while async events are queued)
would let the guest decide where snapshots may be taken, which a fuzzer choosing snapshot
points at random cannot accept.

Interrupt: PLIC source `spec.irq` (2) is high exactly while completions wait (DONE_COUNT >
0), driven after every change rather than compared with the line's cached level. The line
is HOST_SIDE, as the NIC's: its level derives from the DONE queue, and the PLIC saves the
levels it has seen, so nothing is pushed after a load.

Reset (a guest reset): registers and slots cleared and the backend's host requests
cancelled (QEMU drains block I/O on reset); the disk keeps its content and the id counter
goes on, so an id never names two requests in one run (blkreplay's counter is not reset
either) and a logged id is unambiguous.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

from vm.backends import BlockBackend
from vm.config import ConfigError, DeviceSpec
from vm.devices import Device, DeviceHost, IrqLine
from vm.memory import Bus
from vm.vmstate import (
    U8,
    U32,
    Array,
    Bytes,
    BytesKind,
    Kind,
    VMStateDescription,
    VMStateError,
    Wire,
)

KIND = "block"
DEFAULT_BASE = 0x1000_2000  # QEMU virt's virtio-mmio slot 1 (VIRT_VIRTIO + 0x1000)
DEFAULT_IRQ = 2  # that slot's PLIC source (VIRTIO_IRQ + 1)
DEFAULT_NAME = "block"
WINDOW_SIZE = 0x1000

# Register offsets.
MAGIC = 0x00
CAPACITY = 0x04
SECTOR = 0x08
ADDRESS = 0x0C
COUNT = 0x10
COMMAND = 0x14
SUBMIT_RESULT = 0x18
LAST_ID = 0x1C
STATUS = 0x20
DONE_COUNT = 0x24
DONE_ID = 0x28
DONE_RESULT = 0x2C
DONE_ACK = 0x30

MAGIC_VALUE = 0x304B_4C42  # b"BLK0" read as a little-endian word
SECTOR_SIZE = 512
QUEUE_DEPTH = 4  # request slots: in flight plus completed-but-unacknowledged
DEFAULT_SECTORS = 128
MAX_SECTORS = 1 << 14  # 8 MiB: bounds what a snapshot may carry
MAX_DISK_BYTES = MAX_SECTORS * SECTOR_SIZE

# COMMAND values.
CMD_READ = 1
CMD_WRITE = 2

# SUBMIT_RESULT and DONE_RESULT values.
RESULT_OK = 0
ERR_BAD_COMMAND = 1
ERR_BUSY = 2
ERR_BAD_SECTOR = 3
ERR_BAD_ADDRESS = 4

# STATUS bits.
STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1
STATUS_FULL = 1 << 2
STATUS_ERROR = 1 << 3
STATUS_IN_FLIGHT_SHIFT = 8

MASK32 = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class Request:
    """A request in flight, as the guest submitted it. `data` is a WRITE's sectors, read
    from RAM in the COMMAND store (empty for a READ)."""

    id: int
    command: int
    sector: int
    address: int
    count: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished request waiting for the guest's DONE_ACK."""

    id: int
    result: int


@dataclass(frozen=True, slots=True)
class _RecordKind(Kind):
    """A frozen dataclass saved as the list of its fields, each checked by its own kind.

    vmstate's Array holds scalar kinds only (a Struct loads into a sub-object the device
    already has, and a queue's records come and go), so the queues of requests and
    completions save through this kind: Array(attr, _RecordKind(...), max_length=n)."""

    record: type[Any]
    fields: tuple[tuple[str, Kind], ...]

    def __post_init__(self) -> None:
        declared = tuple(f.name for f in dataclasses.fields(self.record))
        if declared != tuple(name for name, _ in self.fields):
            raise ValueError(f"{self.record.__name__}: kinds must name {declared} in order")

    @property
    def label(self) -> str:
        return self.record.__name__

    def encode(self, value: object, where: str) -> Wire:
        if type(value) is not self.record:
            raise VMStateError(f"{where}: expected a {self.label}, got {type(value).__name__}")
        return [kind.encode(getattr(value, name), f"{where}.{name}") for name, kind in self.fields]

    def decode(self, wire: object, where: str, version: int) -> object:
        if not isinstance(wire, list | tuple):
            raise VMStateError(f"{where}: expected a {self.label} list, got {type(wire).__name__}")
        if len(wire) != len(self.fields):
            problem = f"a {self.label} has {len(self.fields)} fields, got {len(wire)}"
            raise VMStateError(f"{where}: {problem}")
        values = {
            name: kind.decode(item, f"{where}.{name}", version)
            for (name, kind), item in zip(self.fields, wire, strict=True)
        }
        return self.record(**values)


REQUEST = _RecordKind(
    Request,
    (
        ("id", U32),
        ("command", U8),
        ("sector", U32),
        ("address", U32),
        ("count", U32),
        ("data", BytesKind(max_length=MAX_DISK_BYTES)),
    ),
)
COMPLETION = _RecordKind(Completion, (("id", U32), ("result", U8)))


class BlockHost(DeviceHost, Protocol):
    """The parts of the machine the device uses beyond DeviceHost: the bus (DMA) and its
    block backend."""

    @property
    def bus(self) -> Bus: ...

    def block_backend(self, name: str) -> BlockBackend: ...


def default_spec(name: str = DEFAULT_NAME, **options: int) -> DeviceSpec:
    """The block device where QEMU virt's second virtio-mmio slot is."""
    return DeviceSpec(
        KIND, name, DEFAULT_BASE, irq=DEFAULT_IRQ, options=tuple(sorted(options.items()))
    )


def initial_image(sectors: int, pattern: int) -> bytearray:
    """The disk a configuration starts with: sector s begins with s as a little-endian word,
    then bytes counting up from (s + pattern + 4) mod 256, so that every sector differs from
    its neighbours and a test can tell which sector landed where."""
    ramp = bytes(range(256)) * 3
    image = bytearray()
    for sector in range(sectors):
        start = (sector + pattern + 4) % 256
        image += sector.to_bytes(4, "little") + ramp[start : start + SECTOR_SIZE - 4]
    return image


def _int_option(spec: DeviceSpec, key: str, default: int, low: int, high: int) -> int:
    value = spec.option(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(
            f"device {spec.name}: option {key} must be an int in {low}..{high}, got {value!r}"
        )
    return value


def _unconnected(level: bool) -> None:  # noqa: FBT001 - a line level
    del level


class BlockDevice(Device):
    kind = KIND
    size = WINDOW_SIZE
    access_sizes = frozenset({4})

    VMSTATE = VMStateDescription(
        "block",
        version=1,
        minimum_version=1,
        fields=[
            U32("sector"),
            U32("address"),
            U32("count"),
            U8("submit_result"),
            U32("last_id"),
            U32("next_id"),
            Array("in_flight", REQUEST, max_length=QUEUE_DEPTH),
            Array("done", COMPLETION, max_length=QUEUE_DEPTH),
            Bytes("disk", max_length=MAX_DISK_BYTES, mutable=True),
        ],
        post_load=lambda device: device.resubmit_after_load(),
    )
    # The backend (its queues, timer and latency stream) is the host's; `irq` is the wire
    # to the PLIC, whose level derives from `done` (see the module docstring).
    HOST_SIDE: ClassVar[frozenset[str]] = frozenset({"backend", "irq"})

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.irq = host.irq_line(spec.irq) if spec.irq is not None else IrqLine(_unconnected)
        sectors = _int_option(spec, "sectors", DEFAULT_SECTORS, 1, MAX_SECTORS)
        self.disk = initial_image(sectors, _int_option(spec, "pattern", 0, 0, 0xFF))
        self.next_id = 1  # the id the next accepted request takes; 0 means "none"
        self.backend = cast(BlockHost, host).block_backend(spec.name)
        self.backend.connect(complete=self.complete)
        self.reset()

    @property
    def _bus(self) -> Bus:
        return cast(BlockHost, self.host).bus

    @property
    def capacity(self) -> int:
        """The disk's size in sectors (from the image itself, so a loaded image is
        consistent with it whatever it holds)."""
        return len(self.disk) // SECTOR_SIZE

    def reset(self) -> None:
        """Registers and slots to power-on values, host requests cancelled; the disk and the
        id counter stay (see the module docstring)."""
        self.sector = 0
        self.address = 0
        self.count = 0
        self.submit_result = RESULT_OK
        self.last_id = 0
        self.in_flight: list[Request] = []  # in submission order
        self.done: list[Completion] = []  # in completion order: DONE_ID shows the first
        self.backend.cancel_all()
        self._update_irq()

    def resubmit_after_load(self) -> None:
        """post_load: the host starts again on the requests the snapshot holds in flight
        (host-side only; see the module docstring). Touches no other device."""
        self.backend.cancel_all()
        for request in self.in_flight:
            self.backend.submit(request.id)

    # -- MMIO -----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        del size  # always 4 (access_sizes), aligned: the bus splits misaligned loads
        if offset == MAGIC:
            return MAGIC_VALUE
        if offset == CAPACITY:
            return self.capacity
        if offset == SECTOR:
            return self.sector
        if offset == ADDRESS:
            return self.address
        if offset == COUNT:
            return self.count
        if offset == SUBMIT_RESULT:
            return self.submit_result
        if offset == LAST_ID:
            return self.last_id
        if offset == STATUS:
            return self._status()
        if offset == DONE_COUNT:
            return len(self.done)
        if offset == DONE_ID:
            return self.done[0].id if self.done else 0
        if offset == DONE_RESULT:
            return self.done[0].result if self.done else 0
        return 0  # COMMAND, DONE_ACK and offsets without a register

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        if offset == SECTOR:
            self.sector = value
        elif offset == ADDRESS:
            self.address = value
        elif offset == COUNT:
            self.count = value
        elif offset == COMMAND:
            self._submit(value)
        elif offset == DONE_ACK:
            self._retire()
        # Read-only registers and offsets without a register ignore writes.

    def _status(self) -> int:
        status = len(self.in_flight) << STATUS_IN_FLIGHT_SHIFT
        if self.in_flight:
            status |= STATUS_BUSY
        if self.done:
            status |= STATUS_DONE
        if self._slots_used() >= QUEUE_DEPTH:
            status |= STATUS_FULL
        if self.submit_result != RESULT_OK:
            status |= STATUS_ERROR
        return status

    def _slots_used(self) -> int:
        return len(self.in_flight) + len(self.done)

    # -- submission: in the guest's COMMAND store -------------------------------------------

    def _submit(self, command: int) -> None:
        if command not in (CMD_READ, CMD_WRITE):
            result = ERR_BAD_COMMAND
        elif self._slots_used() >= QUEUE_DEPTH:
            result = ERR_BUSY
        else:
            result = self._check_range(self.sector, self.count, self.address)
        self.submit_result = result
        if result != RESULT_OK:
            return
        data = b""
        if command == CMD_WRITE:
            # Read now, inside the guest's store: see "A WRITE reads RAM at submission".
            data = self._bus.read_bytes(self.address, self.count * SECTOR_SIZE)
        request = Request(self.next_id, command, self.sector, self.address, self.count, data)
        self.next_id = self.next_id % MASK32 + 1  # 1..2**32-1, wrapping past 0 ("none")
        self.last_id = request.id
        self.in_flight.append(request)
        self.backend.submit(request.id)

    def _check_range(self, sector: int, count: int, address: int) -> int:
        """RESULT_OK, or why these sectors and this buffer cannot be transferred."""
        if count == 0 or sector + count > self.capacity:
            return ERR_BAD_SECTOR
        if not self._bus.is_ram(address, count * SECTOR_SIZE):
            return ERR_BAD_ADDRESS
        return RESULT_OK

    def _check_request(self, request: Request) -> int:
        """Checked again at completion: a loaded snapshot may hold anything its types
        allow, and a bad one must end as an error result, never as a Python exception."""
        if request.command not in (CMD_READ, CMD_WRITE):
            return ERR_BAD_COMMAND
        result = self._check_range(request.sector, request.count, request.address)
        # A WRITE's data must fill its sectors exactly: assigning a slice of another length
        # would resize the disk.
        short_write = (
            request.command == CMD_WRITE and len(request.data) != request.count * SECTOR_SIZE
        )
        if result == RESULT_OK and short_write:
            return ERR_BAD_SECTOR
        return result

    # -- completion: at the async point, with the id the choke point returned ---------------

    def complete(self, request_id: int) -> bool:
        """Finish request `request_id`: the one completion path, for the backend live and
        for part 3's replay alike. Moves the request's data (a READ into RAM through the
        bus's one write path, a WRITE into the disk), queues its completion and drives the
        interrupt line. False, changing nothing, if no request with that id is in flight
        (a replay out of step, or a host completion that outlived a reset)."""
        index = next((i for i, r in enumerate(self.in_flight) if r.id == request_id), None)
        if index is None:
            return False
        request = self.in_flight.pop(index)
        result = self._check_request(request)
        if result == RESULT_OK:
            start = request.sector * SECTOR_SIZE
            end = start + request.count * SECTOR_SIZE
            if request.command == CMD_READ:
                self._bus.write_bytes(request.address, self.disk[start:end])
            else:
                self.disk[start:end] = request.data
        self.done.append(Completion(request.id, result))
        self._update_irq()
        return True

    def _retire(self) -> None:
        if self.done:
            self.done.pop(0)
            self._update_irq()

    def _update_irq(self) -> None:
        # Always drive the line, never compare with its cached level: after a loadvm the
        # cache is stale, and the PLIC pends a source each time its line is driven high.
        self.irq.set(bool(self.done))
