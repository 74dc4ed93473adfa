"""savevm/loadvm: the whole machine's guest state as one msgpack snapshot.

    data = savevm(machine)                      # bytes
    fresh = Machine(machine.config)             # same MachineConfig; no program loaded
    loadvm(fresh, data)                         # fresh now continues exactly as machine would

A snapshot is two msgpack objects back to back:

- the header, a map: `magic` (b"detfuzz-savevm"), `format` (FORMAT_VERSION), `config_hash`
  (`vm.config.config_hash` of the machine's configuration), `icount_shift`, `icount` (where
  the snapshot was taken, so a seek can pick a snapshot without decoding the body) and
  `body_sha256` (of the body's bytes). The header comes first and is decoded alone (it is
  at most HEADER_MAX bytes), so a snapshot from a newer detfuzz is refused as "too new"
  whatever its body looks like.
- the body, a map: `cpu` (CPU_VMSTATE section), `ram` and `rom` (page index -> page bytes,
  all-zero pages left out; the index counts 4 KiB pages from the region's start),
  `boot_image` (the [address, bytes] list a guest reset copies into RAM again), `vclock`
  (VCLOCK_VMSTATE section: the virtual clock's bias), `devices` (device name -> the
  section its class's `VMSTATE` saves; timer deadlines are part of those sections) and
  `replay` (nil, or the record/replay position [next event index, icount its INSTRUCTION
  count starts at] of a machine that was recording or replaying: QEMU's "replay" section,
  so a replay can start from a snapshot taken while recording).

What is not saved, and why: the console and the finisher code (output already delivered,
not state), host time, the host model's slice index, REALTIME timers and EXTERNAL virtual
timers (host side: by the replay rules none of them can change guest state), breakpoints
(a debugger setting of the machine, not of the guest) and translated code (rebuilt from
RAM). savevm refuses a machine it cannot save faithfully: a device whose class declares no
`VMSTATE` (a device without guest state declares an empty one), a guest-side timer
(VIRTUAL, non-EXTERNAL, or HOST) that no device section saves, or a scheduled bottom half
(as QEMU refuses "while async events are queued", in every mode alike: the caller retries
at a later instruction boundary, see vm.session).

Record/replay: a replaying machine loads a snapshot's replay position along with it and
goes on from there in its log (the position must lie in that log, before the snapshot's
icount). A recording machine loads no snapshot: its log could not describe the jump.

Loading is all or nothing. Everything is validated first, without touching the machine:
the header against the machine (magic, format version, icount shift, configuration
hash), the body checksum (so any flipped or missing byte is caught, RAM bytes included),
the body layout, every vmstate section (`vm.vmstate.check`), RAM and ROM page indices and
lengths, the boot image and the CPU values. Only then is anything committed: RAM through
the bus's one write path (`Bus.write_bytes`, which invalidates translated code), zeroing
pages that are non-zero in the target but absent from the snapshot; the devices' sections
in any order (`section_order_seed` shuffles it, for tests; `post_load` may touch only its
own device); the CPU last, in place (translated code holds the very register list). Any
problem raises `SnapshotError`, a ValueError, never a bare msgpack/Key/Index/TypeError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgpack

from vm.clock import ClockKind
from vm.config import config_hash
from vm.cpu import CpuState
from vm.csr import MIE_WRITABLE, MSTATUS_WRITABLE
from vm.memory import PAGE_SHIFT, PAGE_SIZE, RAM_BASE, Bus
from vm.replay import Recorder, Replayer
from vm.vmstate import (
    I64,
    U32,
    U64,
    Array,
    Bool,
    IntKind,
    StagedLoad,
    VMStateDescription,
    VMStateError,
    check,
    field_names,
    save,
)

if TYPE_CHECKING:
    from vm.machine import Machine

MAGIC: Final = b"detfuzz-savevm"
FORMAT_VERSION: Final = 2  # 2: the replay position
HEADER_KEYS: Final = ("magic", "format", "config_hash", "icount_shift", "icount", "body_sha256")
BODY_KEYS: Final = ("cpu", "ram", "rom", "boot_image", "vclock", "devices", "replay")
# The header is small (about 150 bytes); a bound lets it be decoded without copying the
# whole snapshot into msgpack's buffer. Part of the format: a header never grows past it.
HEADER_MAX: Final = 4096
_ZERO_PAGE: Final = bytes(PAGE_SIZE)
_MASK64 = (1 << 64) - 1


class SnapshotError(ValueError):
    """A snapshot that cannot be saved or loaded; the message says which part and why.
    A failed loadvm has changed nothing in the target machine."""


# -- state descriptions of the machine's own parts ---------------------------------------------

# mcycle/minstret are kept as offsets: a written 64-bit value minus a count, so an offset
# spans 65 signed bits. Saved exactly (not reduced mod 2**64), so a loaded CPU is equal
# field by field, not merely equivalent.
COUNTER_OFFSET: Final = IntKind(65, signed=True)

CPU_VMSTATE: Final = VMStateDescription(
    "cpu",
    version=1,
    minimum_version=1,
    fields=[
        Array("x", U32, length=32),
        U32("pc"),
        U64("icount"),
        U64("nonretired"),
        U32("mstatus"),
        U32("mie"),
        # The levels the CLINT and PLIC drove: the receiver saves them, so no device pushes
        # its line again after a load (DESIGN, "Snapshots").
        U32("mip"),
        U32("mtvec"),
        U32("mscratch"),
        U32("mepc"),
        U32("mcause"),
        U32("mtval"),
        COUNTER_OFFSET("mcycle_delta"),
        COUNTER_OFFSET("minstret_delta"),
        Bool("halted"),
        # Not CSRs, but the fault-loop detector reads them on the next trap: without them a
        # machine loaded just after a trap would take one more trap before stopping.
        I64("last_trap_target"),
        I64("last_trap_retired"),
    ],
    # irq_pending is derived from mstatus, mip and mie; fault_loop and leave_block are
    # reset by every run and between blocks, so none of them is state.
    post_load=lambda cpu: cpu.update_irq_pending(),
)

VCLOCK_VMSTATE: Final = VMStateDescription(
    # The shift is configuration (checked through the header); the bias is what WFI warps.
    "vclock",
    version=1,
    minimum_version=1,
    fields=[U64("bias_ns")],
)


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """A snapshot's validated header (`read_header`)."""

    format: int
    config_hash: str
    icount_shift: int
    icount: int
    body_sha256: bytes


# -- save -------------------------------------------------------------------------------------


def savevm(machine: Machine) -> bytes:
    """The machine's whole guest state as snapshot bytes (see the module docstring).

    Take it between runs (after `Machine.run` returned). Raises SnapshotError if the machine
    holds state a snapshot cannot carry. Reads only: the machine is not changed (beyond
    what devices' `pre_save` hooks do, which must not change guest-visible state)."""
    _check_saveable(machine)
    bus = machine.bus
    try:
        body_data = {
            "cpu": save(CPU_VMSTATE, machine.cpu),
            "ram": _nonzero_ram_pages(bus),
            "rom": _nonzero_pages(bus.rom, len(bus.rom)),
            "boot_image": [[addr, bytes(data)] for addr, data in machine.boot_image],
            "vclock": save(VCLOCK_VMSTATE, machine.vclock),
            "devices": {
                name: save(_description(name, device), device)
                for name, device in machine.devices.items()
            },
            "replay": None if machine.rr is None else list(machine.rr.position()),
        }
    except VMStateError as exc:
        raise SnapshotError(f"cannot save: {exc}") from exc
    try:
        body = msgpack.packb(body_data, use_bin_type=True)
    except (OverflowError, TypeError, ValueError) as exc:
        raise SnapshotError(f"cannot save: {exc}") from exc
    header = {
        "magic": MAGIC,
        "format": FORMAT_VERSION,
        "config_hash": config_hash(machine.config),
        "icount_shift": machine.config.icount_shift,
        "icount": machine.cpu.icount,
        "body_sha256": _checksum(body),
    }
    return msgpack.packb(header, use_bin_type=True) + body


def _description(name: str, device: object) -> VMStateDescription:
    desc = getattr(type(device), "VMSTATE", None)
    if not isinstance(desc, VMStateDescription):
        kind = getattr(device, "kind", type(device).__name__)
        raise SnapshotError(
            f"device {name!r} ({kind}) declares no VMSTATE, so its state cannot be saved; "
            "give its class a VMStateDescription (an empty one if it has no guest state)"
        )
    return desc


def _check_saveable(machine: Machine) -> None:
    for name, device in machine.devices.items():
        _description(name, device)
    bottom_halves = machine.bottom_halves
    if bottom_halves.plain_queue or bottom_halves.replay_queue:
        # A scheduled callback is host-side Python state a snapshot cannot carry; after a
        # run returns both queues have normally been drained.
        raise SnapshotError("cannot save while a bottom half is scheduled")
    covered = _saved_timers(machine)
    for clock in (ClockKind.VIRTUAL, ClockKind.HOST):
        for timer in machine.timer_lists[clock].timers:
            if not timer.external and id(timer) not in covered:
                raise SnapshotError(
                    f"cannot save: a {clock.value} timer of {_timer_owner(timer.callback)} "
                    "is not saved by any device section (save its deadline_ns with "
                    "Struct(attr, [OptionalInt('deadline_ns')]) in the device's VMSTATE)"
                )


def _saved_timers(machine: Machine) -> set[int]:
    """ids of the objects whose `deadline_ns` some device section saves."""
    covered: set[int] = set()
    for name, device in machine.devices.items():
        for path in field_names(_description(name, device)):
            owner_path, _, attr = path.rpartition(".")
            if not owner_path or attr != "deadline_ns":
                continue
            obj: object = device
            for part in owner_path.split("."):
                obj = getattr(obj, part, None)
            covered.add(id(obj))
    return covered


def _timer_owner(callback: object) -> str:
    owner = getattr(callback, "__self__", None)
    name = getattr(owner, "name", None)
    if isinstance(name, str):
        return f"device {name!r}"
    return f"callback {getattr(callback, '__qualname__', repr(callback))}"


def _nonzero_pages(buf: Any, size: int) -> dict[int, bytes]:
    """Page index -> bytes for every page of `buf[:size]` that is not all zero (the last
    page may be short if `size` is not a page multiple)."""
    pages: dict[int, bytes] = {}
    zero = _ZERO_PAGE
    for index, start in enumerate(range(0, size, PAGE_SIZE)):
        page = bytes(buf[start : min(start + PAGE_SIZE, size)])
        if page != zero[: len(page)]:
            pages[index] = page
    return pages


def _nonzero_ram_pages(bus: Bus) -> dict[int, bytes]:
    """`_nonzero_pages` of RAM, reading only the pages ever written (the rest are zero)."""
    first = RAM_BASE >> PAGE_SHIFT
    pages: dict[int, bytes] = {}
    for page in bus.maybe_nonzero_ram_pages():
        offset = (page - first) * PAGE_SIZE
        data = bytes(bus.ram[offset : offset + PAGE_SIZE])
        if data != _ZERO_PAGE:
            pages[page - first] = data
    return pages


def _checksum(body: bytes | memoryview) -> bytes:
    # SHA-256 rather than BLAKE2b: with the CPU's SHA extensions it is about twice as fast
    # here, and hashing RAM is a large part of a snapshot's cost.
    return hashlib.sha256(body).digest()


# -- header -------------------------------------------------------------------------------


def read_header(data: bytes) -> SnapshotHeader:
    """The header of snapshot `data`, validated on its own (magic, format version, field
    types); the body is neither decoded nor checked. SnapshotError if it is not a header."""
    return _split(data)[0]


def _split(data: object) -> tuple[SnapshotHeader, memoryview]:
    """The validated header and a view of the body's raw bytes (not a copy: a snapshot
    may be as large as RAM)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SnapshotError(f"a snapshot is bytes, got {type(data).__name__}")
    try:
        raw = memoryview(data).cast("B")
    except TypeError as exc:  # a non-contiguous view
        raise SnapshotError(f"a snapshot is contiguous bytes: {exc}") from None
    # Bounded, so hostile lengths in the data cannot make msgpack allocate more.
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=False, ext_hook=_no_ext, max_buffer_size=HEADER_MAX
    )
    try:
        unpacker.feed(raw[:HEADER_MAX])
        header = unpacker.unpack()
        offset = unpacker.tell()
    except msgpack.OutOfData:
        if len(raw) >= HEADER_MAX:
            raise SnapshotError(f"snapshot header is longer than {HEADER_MAX} bytes") from None
        raise SnapshotError("not a detfuzz snapshot: truncated or empty header") from None
    except Exception as exc:  # msgpack's C decoder raises many types on hostile input
        raise SnapshotError(f"not a detfuzz snapshot: undecodable header ({exc})") from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise SnapshotError("not a detfuzz snapshot: bad magic")
    version = header.get("format")
    if not _is_int(version):
        raise SnapshotError(f"snapshot format version must be an int, got {version!r:.40}")
    if version > FORMAT_VERSION:
        raise SnapshotError(
            f"snapshot format {version} is newer than this detfuzz supports ({FORMAT_VERSION})"
        )
    if version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format {version} is not supported ({FORMAT_VERSION})")
    _exact_keys(header, HEADER_KEYS, "snapshot header")
    parsed = SnapshotHeader(
        format=version,
        config_hash=_typed(header["config_hash"], str, "header config_hash"),
        icount_shift=_typed_int(header["icount_shift"], "header icount_shift"),
        icount=_typed_int(header["icount"], "header icount"),
        body_sha256=_typed(header["body_sha256"], bytes, "header body_sha256"),
    )
    return parsed, raw[offset:]


def _no_ext(code: int, data: bytes) -> object:
    # savevm writes no extension types; an ExtType would decode as a tuple, which the
    # vmstate engine accepts where a list belongs.
    raise ValueError(f"unexpected msgpack extension type {code}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _typed(value: object, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise SnapshotError(f"{what} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _typed_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MASK64:
        raise SnapshotError(f"{what} must be an int in 0..2**64-1, got {value!r:.40}")
    return value


def _exact_keys(data: Mapping[Any, Any], keys: Sequence[str], what: str) -> None:
    unknown = [k for k in data if k not in keys]
    if unknown:
        raise SnapshotError(f"{what}: unknown key {unknown[0]!r:.40}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise SnapshotError(f"{what}: missing key {missing[0]!r}")


# -- load: validate everything, then commit ---------------------------------------------------


def section_order(names: Iterable[str], seed: int | None) -> list[str]:
    """The order device sections are loaded in: `names` as given without a seed, else a
    permutation chosen by `seed` (sorted by a BLAKE2b of seed and name; vm/ takes no
    randomness from the `random` module)."""
    names = list(names)
    if seed is None:
        return names

    def key(name: str) -> tuple[bytes, str]:
        digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=16).digest()
        return digest, name

    return sorted(names, key=key)


@dataclass(slots=True)
class _Staged:
    """Everything loadvm will write, validated."""

    cpu: CpuState
    ram: dict[int, bytes]
    rom: bytes
    boot_image: list[tuple[int, bytes]]
    vclock: StagedLoad
    devices: list[StagedLoad]
    replay: tuple[int, int] | None


def loadvm(
    machine: Machine,
    data: bytes,
    *,
    section_order_seed: int | None = None,
    reverse_sections: bool = False,
) -> None:
    """Restore snapshot `data` into `machine`, a freshly built machine of the snapshot's
    configuration. All or nothing: on SnapshotError the machine is unchanged.

    A machine that has run already works too: RAM (pages absent from the snapshot are
    zeroed), the boot ROM and translated code are brought in line, and every field the
    descriptions save is assigned. Only state the snapshot does not carry keeps its
    current value instead of its reset value: a vmstate subsection absent from the data,
    or a field newer than the saved section version (none exist yet).

    `section_order_seed` shuffles the order in which device sections are checked and
    loaded (a device's post_load may touch only its own device, so any order must give
    the same machine; tests use this to prove it); `reverse_sections` loads them in the
    reverse of that order, so two loads can put any two sections in both orders."""
    header, body_bytes = _split(data)
    config = machine.config
    if isinstance(machine.rr, Recorder):
        raise SnapshotError(
            "a recording machine cannot load a snapshot: its log could not describe the jump"
        )
    if header.icount_shift != config.icount_shift:
        raise SnapshotError(
            f"snapshot icount shift {header.icount_shift} is not the machine's "
            f"{config.icount_shift}"
        )
    expected_hash = config_hash(config)
    if header.config_hash != expected_hash:
        raise SnapshotError(
            f"snapshot is of machine configuration {header.config_hash:.16}..., not this "
            f"machine's {expected_hash:.16}..."
        )
    if _checksum(body_bytes) != header.body_sha256:
        raise SnapshotError("snapshot body checksum mismatch: the snapshot is corrupt or truncated")
    try:
        body = msgpack.unpackb(body_bytes, raw=False, strict_map_key=False, ext_hook=_no_ext)
    except Exception as exc:  # msgpack's C decoder raises many types on hostile input
        raise SnapshotError(f"snapshot body is undecodable ({exc})") from None
    staged = _stage(machine, header, body, section_order_seed, reverse=reverse_sections)
    _commit(machine, staged)


def _stage(
    machine: Machine, header: SnapshotHeader, body: object, seed: int | None, *, reverse: bool
) -> _Staged:
    if not isinstance(body, dict):
        raise SnapshotError(f"snapshot body must be a map, got {type(body).__name__}")
    _exact_keys(body, BODY_KEYS, "snapshot body")
    bus = machine.bus
    try:
        cpu = _stage_cpu(body["cpu"], header.icount)
        vclock = check(VCLOCK_VMSTATE, machine.vclock, body["vclock"])
    except VMStateError as exc:
        raise SnapshotError(str(exc)) from None
    ram = _stage_pages(body["ram"], bus.ram_size, "ram")
    rom_pages = _stage_pages(body["rom"], len(bus.rom), "rom")
    rom = bytearray(len(bus.rom))
    for index, page in rom_pages.items():
        rom[index * PAGE_SIZE : index * PAGE_SIZE + len(page)] = page
    return _Staged(
        cpu=cpu,
        ram=ram,
        rom=bytes(rom),
        boot_image=_stage_boot_image(body["boot_image"], machine),
        vclock=vclock,
        devices=_stage_devices(machine, body["devices"], seed, reverse=reverse),
        replay=_stage_replay(machine, body["replay"], header.icount),
    )


def _stage_cpu(wire: object, icount: int) -> CpuState:
    """The saved CPU, loaded into a scratch CpuState and checked for values no CPU holds."""
    cpu = CpuState()
    check(CPU_VMSTATE, cpu, wire).commit()  # the scratch object: nothing of the machine's
    problems = []
    if cpu.x[0] != 0:
        problems.append(f"x0 is {cpu.x[0]:#x}, not 0")
    if cpu.mstatus & ~MSTATUS_WRITABLE:
        problems.append(f"mstatus {cpu.mstatus:#x} has bits other than MIE/MPIE")
    if cpu.mie & ~MIE_WRITABLE:
        problems.append(f"mie {cpu.mie:#x} has bits other than MSIE/MTIE/MEIE")
    if cpu.mip & ~MIE_WRITABLE:
        problems.append(f"mip {cpu.mip:#x} has bits other than MSIP/MTIP/MEIP")
    if cpu.mepc & 3:
        problems.append(f"mepc {cpu.mepc:#x} is not 4-byte aligned")
    if cpu.mtvec & 3 > 1:
        problems.append(f"mtvec {cpu.mtvec:#x} has a reserved mode")
    if cpu.nonretired > cpu.icount:
        problems.append(f"nonretired {cpu.nonretired} exceeds icount {cpu.icount}")
    if cpu.icount != icount:
        problems.append(f"icount {cpu.icount} is not the header's {icount}")
    if problems:
        raise SnapshotError(f"load cpu: {'; '.join(problems)}")
    return cpu


def _stage_pages(wire: object, size: int, what: str) -> dict[int, bytes]:
    if not isinstance(wire, dict):
        raise SnapshotError(f"{what} pages must be a map, got {type(wire).__name__}")
    count = -(-size // PAGE_SIZE)
    pages: dict[int, bytes] = {}
    for index, page in wire.items():
        if not _is_int(index) or not 0 <= index < count:
            raise SnapshotError(f"{what} page index {index!r:.40} is not in 0..{count - 1}")
        expected = min(PAGE_SIZE, size - index * PAGE_SIZE)
        if not isinstance(page, bytes) or len(page) != expected:
            got = len(page) if isinstance(page, bytes) else type(page).__name__
            raise SnapshotError(f"{what} page {index} must be {expected} bytes, got {got}")
        pages[index] = page
    return pages


def _stage_boot_image(wire: object, machine: Machine) -> list[tuple[int, bytes]]:
    if not isinstance(wire, list):
        raise SnapshotError(f"boot_image must be a list, got {type(wire).__name__}")
    image = []
    for i, entry in enumerate(wire):
        if not (isinstance(entry, list) and len(entry) == 2):
            raise SnapshotError(f"boot_image[{i}] must be an [address, bytes] pair")
        addr, data = entry
        if not (_is_int(addr) and isinstance(data, bytes)):
            raise SnapshotError(f"boot_image[{i}] must be an [address, bytes] pair")
        if not machine.bus.is_ram(addr, len(data)):
            raise SnapshotError(f"boot_image[{i}]: {len(data)} bytes at {addr:#x} are not RAM")
        image.append((addr, data))
    return image


def _stage_replay(machine: Machine, wire: object, icount: int) -> tuple[int, int] | None:
    """The saved replay position, checked against the replaying machine's log."""
    if wire is None:
        if isinstance(machine.rr, Replayer):
            raise SnapshotError(
                "snapshot carries no replay position (it was taken outside record/replay), "
                "so a replay cannot start from it"
            )
        return None
    if not (isinstance(wire, list) and len(wire) == 2 and all(_is_int(v) for v in wire)):
        raise SnapshotError("replay position must be an [event index, icount] pair")
    index, base_icount = wire
    if isinstance(machine.rr, Replayer):
        problem = machine.rr.position_problem(index, base_icount, icount)
        if problem is not None:
            raise SnapshotError(f"snapshot replay position: {problem}")
    return (index, base_icount)


def _stage_devices(
    machine: Machine, wire: object, seed: int | None, *, reverse: bool = False
) -> list[StagedLoad]:
    if not isinstance(wire, dict):
        raise SnapshotError(f"device sections must be a map, got {type(wire).__name__}")
    names = list(machine.devices)
    _exact_keys(wire, names, "device sections")
    staged = []
    order = section_order(names, seed)
    for name in reversed(order) if reverse else order:
        device = machine.devices[name]
        desc = _description(name, device)
        try:
            staged.append(check(desc, device, wire[name]))
        except VMStateError as exc:
            raise SnapshotError(f"device {name!r}: {exc}") from None
    return staged


def _commit(machine: Machine, staged: _Staged) -> None:
    """Write the validated state. Nothing here can fail on snapshot data; a device's
    post_load hook that raises would leave the machine half-loaded: such a hook is a bug
    in that device (Machine has no flag yet to mark itself unusable)."""
    _commit_ram(machine, staged.ram)
    _commit_rom(machine, staged.rom)
    machine.boot_image[:] = staged.boot_image
    staged.vclock.commit()
    for section in staged.devices:
        section.commit()
    # The CPU last: mip holds the levels the devices drove, so even a post_load that
    # (wrongly) pushed a line could not leave mip different from the snapshot's.
    _commit_cpu(machine.cpu, staged.cpu)
    if isinstance(machine.rr, Replayer) and staged.replay is not None:
        machine.rr.seek(*staged.replay)
    # The virtual deadlines may all have moved (the CLINT's post_load marks it too, but a
    # device without a timer must not be needed for this): the next run recomputes them.
    machine.timer_lists[ClockKind.VIRTUAL].changed = True
    # A snapshot is taken where a run returned, its boundary work done: a run from here
    # goes on to the next instruction, as the saved machine's next run would.
    machine._settled_icount = staged.cpu.icount


def _commit_ram(machine: Machine, pages: dict[int, bytes]) -> None:
    bus = machine.bus
    writes = {index: _ZERO_PAGE for index in _nonzero_ram_pages(bus)}
    writes.update(pages)
    # Page by page through the one write path, which marks each page dirty and drops the
    # translated code on it. (Joining consecutive pages first costs more than the calls.)
    for index in sorted(writes):
        bus.write_bytes(RAM_BASE + index * PAGE_SIZE, writes[index])


def _commit_rom(machine: Machine, rom: bytes) -> None:
    bus = machine.bus
    if bus.rom == rom:
        return
    # The bus has no write path for the ROM (the guest cannot write it; `Machine.boot` fills
    # it directly), so drop code translated from it here the way Bus._note_write does.
    first = bus.rom_base >> PAGE_SHIFT
    last = (bus.rom_base + len(bus.rom) - 1) >> PAGE_SHIFT
    for page in range(first, last + 1):
        if page in bus.code_pages:
            bus.code_pages.discard(page)
            bus.on_code_write(page)
    bus.rom[:] = rom


def _commit_cpu(cpu: CpuState, loaded: CpuState) -> None:
    for path in field_names(CPU_VMSTATE):
        if path == "x":
            cpu.x[:] = loaded.x  # in place: translated code and the interpreter hold this list
        else:
            setattr(cpu, path, getattr(loaded, path))
    cpu.fault_loop = False
    cpu.leave_block = False
    cpu.update_irq_pending()
