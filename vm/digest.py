"""The state digest: a pure function of guest state, broken down by component.

What counts (DESIGN.md, "State digest"): the CPU (registers, pc, icount and every field that
backs a CSR), RAM, the boot ROM, the virtual clock, and every device attribute not declared
in the device class's `HOST_SIDE`, whether or not its vmstate saves it, so that a field
savevm forgets shows up as a digest difference after loadvm. Host-side state (the host
model, host time, nondet, console, translation caches, heat counts) is excluded by
construction: only the CPU, RAM, ROM, the virtual clock and the devices are walked.

    digest(m)             32 bytes, SHA-256 based
    component_digests(m)  {"cpu": ..., "clock": ..., "rom": ..., "uart0": ...,
                           "ram[0x80001000..0x80001fff]": ... (one per non-zero page)}
    combine(components)   == digest(m): the digest is a function of the components alone
    diff(a, b)            [Difference("cpu.x5", 1, 2), Difference("uart0.lcr", 0, 3), ...]

Device attributes are walked generically and encoded canonically (see `_walk`); a value of
a type the digest cannot encode raises `DigestError` naming `device.attribute`, never hashes
its repr. RAM page digests are cached per machine and brought up to date from the bus's
dirty pages, so a digest costs O(pages written since the last one), not O(RAM).
"""

from __future__ import annotations

import binascii
import collections
import enum
import hashlib
import operator
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from vm.bh import BottomHalf, BottomHalves
from vm.boot import ROM_BASE
from vm.clock import ClockKind, HostTime, Timer, TimerList, VirtualClock
from vm.cpu import CpuState
from vm.devices import Device, IrqLine
from vm.hostmodel import HostModel
from vm.machine import Machine
from vm.memory import PAGE_SHIFT, PAGE_SIZE, RAM_BASE, Bus
from vm.nondet import Nondet

DIGEST_SIZE = 32
# Part of every digest: bump it when the encoding changes, so digests stored in reports
# from an older detfuzz can never compare equal to new ones by accident.
# Part of every digest: changing what or how the digest hashes bumps DIGEST_FORMAT, so
# digests (and reports that carry them) from before are told apart, never misjudged.
DIGEST_FORMAT = 1
_DIGEST_VERSION = b"detfuzz-state-digest-v%d" % DIGEST_FORMAT

# Run-loop bookkeeping in CpuState that is not guest state: `irq_pending` is derived from
# mstatus/mip/mie (the run loop's one-attribute test), `leave_block` is the interpreter's
# "look at once" flag, and `fault_loop`/`last_trap_*` only detect a trap handler that faults
# forever. Every other slot, present or future, is digested.
CPU_BOOKKEEPING = frozenset(
    {"irq_pending", "leave_block", "fault_loop", "last_trap_target", "last_trap_retired"}
)
# Device attributes every device has from the base class: the machine, the spec it was
# built from (configuration, already in config_hash) and its name (the component's name).
DEVICE_INFRASTRUCTURE = frozenset({"host", "spec", "name"})
_RESERVED_COMPONENTS = frozenset({"cpu", "clock", "rom", "ram"})

_ZERO_PAGE = bytes(PAGE_SIZE)
_SUM_MODULUS = 1 << (8 * DIGEST_SIZE)


class DigestError(TypeError):
    """A device holds a value the digest cannot encode canonically; the message names
    `device.attribute` (and the path inside it) and says how to declare it host-side."""


@dataclass(frozen=True, slots=True)
class Shape:
    """The leaf a container or object contributes at its own path (`list[3]`, `Timer`),
    so that structure is hashed as well as the scalars below it."""

    kind: str

    def __str__(self) -> str:
        return self.kind


class _Absent:
    """The value of a field one of two compared machines does not have."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()

Leaf: TypeAlias = bool | int | str | bytes | enum.Enum | Shape | None
Field: TypeAlias = tuple[str, Leaf]


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs between two machines: `path` (`cpu.mepc`, `uart0.lsr`,
    `clint.timer.deadline_ns`, `ram[0x80001000..0x80001fff]`) and its value in each
    (`ABSENT` where only one machine has it). For a memory range the values are the first
    differing byte's and `note` says where it is."""

    path: str
    a: object
    b: object
    note: str = ""

    def __str__(self) -> str:
        where = f" ({self.note})" if self.note else ""
        return f"{self.path}{where}: {_show(self.a)} != {_show(self.b)}"


def _show(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | bytes):
        return str(value) if isinstance(value, Shape) else repr(value)
    if isinstance(value, int):
        return hex(value)
    text = value[:16].hex()
    return f"bytes[{len(value)}] {text}{'...' if len(value) > 16 else ''}"


# -- public API -------------------------------------------------------------------------------


def digest(machine: Machine, *, cached: bool = True) -> bytes:
    """The machine's state digest: `combine(component_digests(machine))`, computed without
    building the per-page entries. `cached=False` recomputes all memory and leaves the
    cache and the bus's dirty tracking untouched (tests compare the two)."""
    memory = _memory(machine, cached=cached)
    return _combine(_field_digests(machine) | {"rom": memory.rom_digest}, memory.ram_sum)


def component_digests(machine: Machine, *, cached: bool = True) -> dict[str, bytes]:
    """Digest of each component: "cpu", "clock", "rom", one per device, and one per
    non-zero RAM page named by its address range; all-zero pages have no entry."""
    memory = _memory(machine, cached=cached)
    components = _field_digests(machine)
    components["rom"] = memory.rom_digest
    for page, (page_digest, _) in memory.pages.items():
        components[ram_page_name(page)] = page_digest
    return components


def sample_digests(machine: Machine) -> tuple[bytes, dict[str, bytes]]:
    """`(digest(machine), component_digests(machine))` from one walk: the digest comes from
    the RAM cache's running sum rather than rehashing every page's term (`combine`)."""
    memory = _memory(machine, cached=True)
    fields = _field_digests(machine)
    fields["rom"] = memory.rom_digest
    components = dict(fields)
    names = _PAGE_NAMES
    for page, (page_digest, _) in memory.pages.items():
        name = names.get(page)
        if name is None:
            name = names[page] = ram_page_name(page)
        components[name] = page_digest
    return _combine(fields, memory.ram_sum), components


# Component names of RAM pages, built once per page number (a sample names every page).
_PAGE_NAMES: dict[int, str] = {}


def combine(components: Mapping[str, bytes]) -> bytes:
    """The digest of a machine whose `component_digests` are `components`.

    RAM pages enter as one "ram" entry, the sum of one term per page (see `_page_term`):
    an order-independent multiset hash, so one dirty page updates it in O(1) instead of
    rehashing every page's entry; every other component is hashed in sorted name order.
    """
    others: dict[str, bytes] = {}
    ram_terms = []
    for name, component in components.items():
        if _is_ram_name(name):
            ram_terms.append(_page_term(_page_of(name), component))
        else:
            others[name] = component
    return _combine(others, _sum_terms(ram_terms))


def diff(a: Machine, b: Machine) -> list[Difference]:
    """What differs between two machines, field by field, in component order: CPU fields
    (`cpu.x5`), the clock, devices (`uart0.lcr`, `clint.timer.deadline_ns`), the ROM and
    RAM pages (`ram[0x80001000..0x80001fff]`, with the first differing byte). Empty
    exactly when the digests are equal."""
    ca, cb = component_digests(a), component_digests(b)
    out: list[Difference] = []
    for name in sorted(ca.keys() | cb.keys()):
        if ca.get(name) != cb.get(name):
            out += component_differences(name, component_state(a, name), component_state(b, name))
    return out


ComponentState: TypeAlias = tuple[Field, ...] | bytes


def component_state(machine: Machine, name: str) -> ComponentState:
    """What component `name` holds, as plain data a trace can carry to another process:
    the bytes of a RAM page or of the ROM, else the component's fields (path, leaf)."""
    if _is_ram_name(name):
        return _ram_bytes(machine, _page_of(name))
    if name == "rom":
        return bytes(machine.bus.rom)
    return tuple(_fields_of(machine, name))


def component_differences(name: str, a: ComponentState, b: ComponentState) -> list[Difference]:
    """The differences between two states of component `name` (`component_state`)."""
    if isinstance(a, bytes) and isinstance(b, bytes):
        base = _page_of(name) << PAGE_SHIFT if _is_ram_name(name) else ROM_BASE
        return [] if a == b else [_memory_difference(name, a, b, base)]
    if isinstance(a, bytes) or isinstance(b, bytes):
        return [Difference(name, "memory" if isinstance(a, bytes) else "fields", "other")]
    return _field_differences(list(a), list(b))


def ram_page_name(page: int) -> str:
    """The component name of RAM page `page` (an address >> 12): `ram[0x80001000..0x80001fff]`."""
    base = page << PAGE_SHIFT
    return f"ram[{base:#010x}..{base + PAGE_SIZE - 1:#010x}]"


def digested_cpu_fields() -> tuple[str, ...]:
    """The CpuState slots the digest covers (all but `CPU_BOOKKEEPING`), in digest order."""
    return tuple(sorted(set(CpuState.__slots__) - CPU_BOOKKEEPING))


# -- components other than RAM ------------------------------------------------------------------


def _field_digests(machine: Machine) -> dict[str, bytes]:
    return {name: _component_digest(name, fields) for name, fields in _all_fields(machine)}


def _component_digest(name: str, fields: list[Field]) -> bytes:
    """`_fields_digest(fields)`, reused when the same fields were digested before under
    `name`: equal paths and leaves of the same exact types (1 == True, so the types are
    compared too), hence the same encoded text and the same digest.

    Devices mostly sit still between samples, and the runs of one check pass through the
    same states at the same sample points, while hashing a component (a 64 KiB disk image
    as hex) costs far more than comparing it. Nothing is trusted but the comparison: the
    fields are the ones just walked, and the remembered ones are immutable (the walk copies
    a bytearray; the other leaves are ints, strings, enum members and Shapes)."""
    last = _LAST_FIELDS.get(name)
    if last is not None and last[0] == fields:
        types = _leaf_types(fields)
        if last[1] == types:
            return last[2]
    else:
        types = _leaf_types(fields)
    seen = _SEEN_FIELDS.get(name)
    if seen is None:
        seen = _SEEN_FIELDS[name] = {}
    key = tuple(fields)
    entry = seen.get(key)  # equal fields, maybe with other leaf types (1 for True)
    if entry is not None and entry[0] == types:
        result = entry[1]
    else:
        result = _fields_digest(fields)
        if entry is None and _bytes_held(fields) <= _SEEN_BYTES:
            if len(seen) >= _SEEN_PER_COMPONENT:
                del seen[next(iter(seen))]  # the oldest
            seen[key] = (types, result)
    _LAST_FIELDS[name] = (fields, types, result)
    return result


def _leaf_types(fields: list[Field]) -> list[type]:
    return list(map(type, map(_second, fields)))


_second = operator.itemgetter(1)


def _bytes_held(fields: list[Field]) -> int:
    return sum(len(leaf) for _, leaf in fields if type(leaf) is bytes)  # type: ignore[arg-type]


# The fields last digested under each component name, their leaf types and their digest.
_LAST_FIELDS: dict[str, tuple[list[Field], list[type], bytes]] = {}
# Per component name, the digests of recent fields (keyed by the fields and leaf types);
# components holding more bytes than _SEEN_BYTES are remembered only as the last fields.
_SEEN_FIELDS: dict[str, dict[tuple[Field, ...], tuple[list[type], bytes]]] = {}
_SEEN_PER_COMPONENT = 64
_SEEN_BYTES = 1 << 17


def _all_fields(machine: Machine) -> Iterator[tuple[str, list[Field]]]:
    yield "cpu", _cpu_fields(machine.cpu)
    yield "clock", _clock_fields(machine.vclock)
    for name, device in machine.devices.items():
        yield name, _device_fields(name, device)


def _fields_of(machine: Machine, component: str) -> list[Field]:
    """The fields of one non-memory component, or none if the machine has no such device."""
    if component == "cpu":
        return _cpu_fields(machine.cpu)
    if component == "clock":
        return _clock_fields(machine.vclock)
    device = machine.devices.get(component)
    return [] if device is None else _device_fields(component, device)


def _cpu_fields(cpu: CpuState) -> list[Field]:
    fields: list[Field] = []
    for slot, path in _CPU_PATHS:
        value = getattr(cpu, slot)
        if slot == "x":
            # Named as the ISA names them (`cpu.x5`), not as a list index.
            for reg_path, reg in zip(_REG_PATHS, value, strict=False):
                if type(reg) is int:  # what _walk does with an int, without the call
                    fields.append((reg_path, reg))
                else:
                    _walk(reg, reg_path, fields, set())
            for index in range(len(_REG_PATHS), len(value)):
                _walk(value[index], f"cpu.x{index}", fields, set())
        elif type(value) in _SCALARS:
            fields.append((path, value))
        else:
            _walk(value, path, fields, set())
    return fields


_CPU_PATHS = tuple((slot, f"cpu.{slot}") for slot in digested_cpu_fields())
_REG_PATHS = tuple(f"cpu.x{index}" for index in range(32))


def _clock_fields(vclock: VirtualClock) -> list[Field]:
    # The shift is configuration, but it decides what every timer deadline means.
    return [("clock.bias_ns", vclock.bias_ns), ("clock.shift", vclock.shift)]


def _device_fields(name: str, device: Device) -> list[Field]:
    if name in _RESERVED_COMPONENTS or name.startswith("ram["):
        raise DigestError(f"device name {name!r} collides with a digest component name")
    cls = type(device)
    paths = _ATTRIBUTE_PATHS.get((cls, name))
    if paths is None:
        paths = _ATTRIBUTE_PATHS[cls, name] = {}
    fields: list[Field] = []
    append = fields.append
    for attr, value in sorted(_attributes(device).items()):
        path = paths.get(attr)
        if path is None:
            skipped = attr in DEVICE_INFRASTRUCTURE or attr in cls.HOST_SIDE
            path = paths[attr] = "" if skipped else f"{name}.{attr}"
        if not path:
            continue
        # The common attribute types first, exactly as _walk encodes them (exact types:
        # a subclass takes _walk's general path).
        kind = type(value)
        if kind in _SCALARS:
            append((path, value))
        elif (kind is list or kind is tuple) and _INTS.issuperset(map(type, value)):
            append((path, _seq_shape(len(value))))  # type: ignore[arg-type]
            fields.extend(zip(_item_paths(path, len(value)), value, strict=True))  # type: ignore[arg-type]
        elif kind is Timer:
            _walk_timer(value, path, fields)  # type: ignore[arg-type]
        elif kind is IrqLine:
            append((path, _IRQ_SHAPE))
            append((_subpath(path, "level"), value.level))  # type: ignore[attr-defined]
        elif kind is bytearray or kind is bytes:
            append((path, _bytes_leaf(path, value)))  # type: ignore[arg-type]
        else:
            try:
                _walk(value, path, fields, set())
            except _Unencodable as exc:
                raise DigestError(
                    f"cannot digest {exc.path}: {exc.why}; if {name}.{attr} is host-side or "
                    f"transient, name {attr!r} in {cls.__qualname__}.HOST_SIDE"
                ) from None
    return fields


def _bytes_leaf(path: str, value: bytes | bytearray) -> bytes:
    """`bytes(value)`, or the equal bytes object this path held last time: a large leaf
    (a disk image) that did not change then compares and hashes as the same object (its
    hash cached) rather than as a fresh copy. Equal content, so the same leaf."""
    if len(value) <= _STREAMED_BYTES:
        return bytes(value)
    last = _LAST_BYTES.get(path)
    if last is not None and last == value:
        return last
    leaf = bytes(value)
    if last is not None or len(_LAST_BYTES) < _LAST_BYTES_KEPT:
        _LAST_BYTES[path] = leaf
    return leaf


# Per path, the last large bytes leaf (see _bytes_leaf).
_LAST_BYTES: dict[str, bytes] = {}
_LAST_BYTES_KEPT = 64
_INTS = frozenset({int})
_IRQ_SHAPE = Shape("IrqLine")
_TIMER_SHAPE = Shape("Timer")
_SEQ_SHAPES: dict[int, Shape] = {}
_SUBPATHS: dict[tuple[str, str], str] = {}


def _seq_shape(length: int) -> Shape:
    shape = _SEQ_SHAPES.get(length)
    if shape is None:
        shape = Shape(f"seq[{length}]")
        if len(_SEQ_SHAPES) < _ITEM_PATHS_KEPT:
            _SEQ_SHAPES[length] = shape
    return shape


def _subpath(path: str, attr: str) -> str:
    sub = _SUBPATHS.get((path, attr))
    if sub is None:
        sub = f"{path}.{attr}"
        if len(_SUBPATHS) < _ITEM_PATHS_KEPT:
            _SUBPATHS[path, attr] = sub
    return sub


# Per device class and name, each attribute's path ("" for one not digested: host-side or
# infrastructure), so a digest does not format the same paths again every time.
_ATTRIBUTE_PATHS: dict[tuple[type, str], dict[str, str]] = {}


def _attributes(obj: object) -> dict[str, object]:
    """An object's instance attributes: its `__dict__` and every set `__slots__` entry."""
    attrs = dict(getattr(obj, "__dict__", {}))
    for slot in _slot_names(type(obj)):
        if hasattr(obj, slot):
            attrs[slot] = getattr(obj, slot)
    return attrs


def _slot_names(cls: type) -> tuple[str, ...]:
    cached = _SLOT_NAMES.get(cls)
    if cached is not None:
        return cached
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    found = _SLOT_NAMES[cls] = tuple(n for n in names if n not in ("__dict__", "__weakref__"))
    return found


# Slot names per class (walked once: an MRO walk per object would dominate small digests).
_SLOT_NAMES: dict[type, tuple[str, ...]] = {}


# -- the canonical walk -------------------------------------------------------------------------


class _Unencodable(Exception):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(path, why)
        self.path = path
        self.why = why


# Objects of the machine itself, never part of one device's state: a device holding one
# under another name than `host` must declare it host-side rather than have the digest
# walk the whole machine through it.
_INFRASTRUCTURE = (
    Machine,
    Bus,
    CpuState,
    TimerList,
    BottomHalves,
    VirtualClock,
    HostTime,
    HostModel,
    Nondet,
)
_OBJECT_SIZE = object.__basicsize__
_SCALARS = frozenset({type(None), bool, int, str})


def _walk(value: object, path: str, out: list[Field], active: set[int]) -> None:
    """Append `value`'s canonical fields under `path` to `out`.

    Scalars are leaves; bytes and bytearray are the same bytes leaf, and lists and tuples
    the same sequence (vmstate loads either form). Containers and objects contribute a
    `Shape` leaf and then their parts: `path[i]`, `path[key]` (dicts in sorted key order),
    `path.attr`. A Timer is its clock and, on the guest-paced virtual clock, its deadline; an
    IrqLine its level; a BottomHalf whether it is queued where the guest can see it.
    `active` holds the containers on the current path, to reject cycles.
    """
    # Exact types: a subclass of int or str may carry more state than its value.
    if type(value) in _SCALARS:
        out.append((path, value))
    elif type(value) in (bytes, bytearray):
        out.append((path, _bytes_leaf(path, value)))  # type: ignore[arg-type]
    elif isinstance(value, enum.Enum):
        out.append((path, value))
    elif isinstance(value, Timer):
        _walk_timer(value, path, out)
    elif isinstance(value, IrqLine):
        out.append((path, _IRQ_SHAPE))
        out.append((f"{path}.level", value.level))
    elif isinstance(value, BottomHalf):
        _walk_bottom_half(value, path, out)
    else:
        if id(value) in active:
            raise _Unencodable(path, "it refers back to an object that contains it")
        active.add(id(value))
        _walk_composite(value, path, out, active)
        active.discard(id(value))


def _walk_composite(value: object, path: str, out: list[Field], active: set[int]) -> None:
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        out.append((path, _seq_shape(len(value))))
        _walk_items(value, path, out, active)
    elif type(value) is collections.deque:
        out.append((path, Shape(f"deque[{len(value)}] maxlen={value.maxlen}")))
        _walk_items(value, path, out, active)
    elif type(value) is dict:
        out.append((path, Shape(f"dict[{len(value)}]")))
        for key, item in _sorted_items(value, path):
            _walk(item, f"{path}[{key!r}]", out, active)
    elif isinstance(value, Device):
        raise _Unencodable(path, f"it refers to device {value.name!r}, a component of its own")
    elif isinstance(value, _INFRASTRUCTURE):
        raise _Unencodable(path, f"a {type(value).__name__} is machine infrastructure")
    elif _is_plain_object(value):
        cls = type(value)
        out.append((path, Shape(f"{cls.__module__}.{cls.__qualname__}")))
        for attr, item in sorted(_attributes(value).items()):
            _walk(item, f"{path}.{attr}", out, active)
    else:
        raise _Unencodable(path, f"a {type(value).__qualname__} has no canonical encoding")


def _walk_items(items: Iterable[object], path: str, out: list[Field], active: set[int]) -> None:
    items = list(items)
    paths = _item_paths(path, len(items))
    if _INTS.issuperset(map(type, items)):  # register arrays: skip a call per element
        out.extend(zip(paths, items, strict=True))  # type: ignore[arg-type]
        return
    for item_path, item in zip(paths, items, strict=True):
        _walk(item, item_path, out, active)


def _item_paths(path: str, length: int) -> tuple[str, ...]:
    paths = _ITEM_PATHS.get((path, length))
    if paths is None:
        paths = tuple(f"{path}[{index}]" for index in range(length))
        if len(_ITEM_PATHS) < _ITEM_PATHS_KEPT:
            _ITEM_PATHS[path, length] = paths
    return paths


# The paths of a sequence's items, per (path, length): formatted once, not at every digest.
_ITEM_PATHS: dict[tuple[str, int], tuple[str, ...]] = {}
_ITEM_PATHS_KEPT = 4096


def _sorted_items(mapping: dict[object, object], path: str) -> list[tuple[object, object]]:
    """A dict's items in an order that depends only on the keys, which must be scalars."""
    keyed = []
    for key, item in mapping.items():
        if type(key) not in _SCALARS and type(key) is not bytes and not isinstance(key, enum.Enum):
            raise _Unencodable(f"{path}[{key!r}]", "dict keys must be None/bool/int/str/bytes")
        keyed.append((_leaf_code(key), key, item))  # type: ignore[arg-type]
    keyed.sort(key=lambda entry: entry[0])
    return [(key, item) for _, key, item in keyed]


def _walk_timer(timer: Timer, path: str, out: list[Field]) -> None:
    out.append((path, _TIMER_SHAPE))
    out.append((_subpath(path, "clock"), timer.clock.value))
    # Only a virtual, non-EXTERNAL timer is paced by the guest alone. A REALTIME or HOST
    # deadline is in host time (another host seed gives another deadline), and an EXTERNAL
    # timer fires wherever the host's main loop happens to run; the guest-visible effects
    # of those timers are in their devices' own fields.
    if timer.clock is ClockKind.VIRTUAL and not timer.external:
        out.append((_subpath(path, "deadline_ns"), timer.deadline_ns))
    else:
        out.append((_subpath(path, "external"), timer.external))


def _walk_bottom_half(bh: BottomHalf, path: str, out: list[Field]) -> None:
    kind = "replay" if bh.replay else "plain"
    out.append((path, Shape(f"BottomHalf({kind}{', oneshot' if bh.oneshot else ''})")))
    # A replay-scheduled bottom half runs at a logged point, so whether it is queued (and
    # since when: its ASYNC id) is guest state; a plain one runs where the host chooses.
    if bh.replay:
        out.append((f"{path}.scheduled", bh.scheduled))
        out.append((f"{path}.scheduled_icount", bh.scheduled_icount if bh.scheduled else None))


def _is_plain_object(value: object) -> bool:
    """True for an instance of a class written in Python: its state is all in its attributes.

    Builtin instances (functions, methods, sets, floats, mmaps) and subclasses of builtins
    are not: their state is not (only) in vars(). Nor are classes backed by C code, such as
    random.Random, whose hidden state shows as an instance larger than its slots account
    for (object's size, 8 bytes a slot, one more each for __dict__ and __weakref__).
    """
    cls = type(value)
    if any(klass.__module__ == "builtins" for klass in cls.__mro__[:-1]) or callable(value):
        return False
    if not hasattr(value, "__dict__") and not _slot_names(cls):
        return False
    return cls.__basicsize__ <= _OBJECT_SIZE + 8 * (len(_slot_names(cls)) + 2)


# -- encoding -----------------------------------------------------------------------------------


def _fields_digest(fields: Iterable[Field]) -> bytes:
    """SHA-256 of the fields' text: `path NUL leaf-code NUL` each. Paths never hold a NUL
    (attribute names, indices, reprs of keys) and leaf codes are tagged and, where they
    could hold one, length-prefixed, so the text is an injective encoding."""
    h = hashlib.sha256(_DIGEST_VERSION)
    parts: list[str] = []
    for path, leaf in fields:
        kind = type(leaf)
        if kind is int:  # by far the most common leaf: _leaf_code's first case, inline
            parts.append(f"{path}\0I{leaf}\0")
        elif kind is bytes and len(leaf) > _STREAMED_BYTES:  # type: ignore[arg-type]
            # The same text, streamed: a large leaf (a disk image) is hashed as hex bytes
            # without first being copied into one string and encoded with the rest.
            parts.append(f"{path}\0B")
            h.update("".join(parts).encode("utf-8", "surrogatepass"))
            h.update(binascii.hexlify(leaf))  # type: ignore[arg-type]
            parts = ["\0"]
        else:
            parts.append(f"{path}\0{_leaf_code(leaf)}\0")
    h.update("".join(parts).encode("utf-8", "surrogatepass"))
    return h.digest()


_STREAMED_BYTES = 512


def _fields_text(fields: Iterable[Field]) -> bytes:
    """What `_fields_digest` hashes after the version prefix, built the plain way (tests
    check the streamed digest against it)."""
    text = "".join([f"{path}\0{_leaf_code(leaf)}\0" for path, leaf in fields])
    return text.encode("utf-8", "surrogatepass")


def _leaf_code(leaf: Leaf) -> str:
    """A tagged encoding: injective across types (1, True, "1", b"\\x01" and Shape("1")
    all differ) and independent of anything but the value."""
    if type(leaf) is int:  # by far the most common leaf: test it first
        return f"I{leaf}"
    if leaf is None:
        return "N"
    if isinstance(leaf, bool):
        return "T" if leaf else "F"
    if isinstance(leaf, enum.Enum):  # before str and int: IntEnum and StrEnum are both
        cls = type(leaf)
        return f"E{cls.__module__}.{cls.__qualname__}.{leaf.name}"
    if isinstance(leaf, Shape):
        return f"C{leaf.kind}"
    if isinstance(leaf, str):
        return f"S{len(leaf)}:{leaf}"
    if isinstance(leaf, bytes):
        return f"B{leaf.hex()}"
    raise TypeError(f"not a digest leaf: {leaf!r}")  # _walk makes only the leaves above


def _bytes_with_length(data: bytes) -> bytes:
    return len(data).to_bytes(4, "little") + data


def _combine(others: Mapping[str, bytes], ram_sum: int) -> bytes:
    h = hashlib.sha256(_DIGEST_VERSION)
    entries = {**others, "ram": ram_sum.to_bytes(DIGEST_SIZE, "little")}
    for name in sorted(entries):
        h.update(_bytes_with_length(name.encode()))
        h.update(entries[name])
    return h.digest()


# -- RAM ----------------------------------------------------------------------------------------


def _is_ram_name(name: str) -> bool:
    return name.startswith("ram[")


def _page_of(name: str) -> int:
    """The page number of a `ram_page_name`: "ram[0x80001000..0x80001fff]" -> 0x80001."""
    return int(name[4:14], 16) >> PAGE_SHIFT


def _page_digest(data: bytes) -> bytes:
    # SHA-256 rather than BLAKE2b: with the CPU's SHA extensions it hashes a page about
    # twice as fast here, and RAM pages are most of a digest's work.
    return hashlib.sha256(data).digest()


def _page_term(page: int, page_digest: bytes) -> int:
    """One page's term in the RAM sum: a hash of its number and digest, so equal pages at
    different addresses, and a page moved elsewhere, contribute differently."""
    term = hashlib.sha256(page.to_bytes(4, "little") + page_digest)
    return int.from_bytes(term.digest(), "little")


def _sum_terms(terms: Iterable[int]) -> int:
    return sum(terms) % _SUM_MODULUS


def _read_page(bus: Bus, page: int) -> bytes:
    offset = (page << PAGE_SHIFT) - RAM_BASE
    # A slice copy then a bytes comparison is an order of magnitude faster for a zero page
    # than comparing a memoryview, and the copy is then hashed.
    return bus.ram[offset : offset + PAGE_SIZE]


def _page_entry(page: int, data: bytes) -> tuple[bytes, int]:
    """A non-zero page's digest and its term in the RAM sum."""
    page_digest = _page_digest(data)
    return page_digest, _page_term(page, page_digest)


class _MemoryCache:
    """The ROM digest and RAM page digests of one machine, kept current by its bus's dirty
    pages (or, with `track=False`, a one-off computation that touches nothing).

    The digest owns the bus's dirty tracking: `Bus.take_dirty_pages` returns and clears
    the set, so it has exactly one consumer, and this is it (snapshots must not call it).
    Every RAM writer goes through the bus's one write path, which marks the page dirty; the
    translated fast path writes without marking only pages already dirty, and taking the
    set re-arms the slow path for them, so the next write to each page is seen again. If a
    second consumer appears, the bus needs per-consumer generations (a write counter per
    page and one cursor per consumer) instead of a set that one caller empties. Until then
    another caller is detected (the bus's set is no longer the one our take left there) and
    costs a full rescan rather than a stale digest.
    """

    __slots__ = ("bus", "dirty", "pages", "ram_sum", "rom", "rom_digest")

    def __init__(self, bus: Bus, *, track: bool) -> None:
        # Weak: the bus's code-write callback is a bound method of the machine, and a
        # value of the WeakKeyDictionary below that kept its key alive would leak machines.
        self.bus = weakref.ref(bus)
        if track:
            bus.take_dirty_pages()  # whatever is dirty now is covered by the scan below
        self.dirty = bus.dirty_pages
        self.pages: dict[int, tuple[bytes, int]] = {}  # non-zero page -> (digest, term)
        for page in bus.maybe_nonzero_ram_pages():
            data = _read_page(bus, page)
            if data != _ZERO_PAGE:
                self.pages[page] = _page_entry(page, data)
        self.ram_sum = _sum_terms(term for _, term in self.pages.values())
        self.rom = bytes(bus.rom)
        self.rom_digest = hashlib.sha256(self.rom).digest()

    def is_current_for(self, bus: Bus) -> bool:
        return self.bus() is bus and bus.dirty_pages is self.dirty

    def update(self, bus: Bus) -> None:
        """Re-digest the pages written since the last update: O(pages written)."""
        ram_sum = self.ram_sum
        for page in bus.take_dirty_pages():
            old = self.pages.pop(page, None)
            if old is not None:
                ram_sum -= old[1]
            data = _read_page(bus, page)
            if data != _ZERO_PAGE:  # a zeroed page contributes nothing, as if never written
                self.pages[page] = entry = _page_entry(page, data)
                ram_sum += entry[1]
        self.ram_sum = ram_sum % _SUM_MODULUS
        self.dirty = bus.dirty_pages
        # Guests cannot write the ROM, but boot() does (entry point, RAM end) with no dirty
        # tracking: a 60 KiB comparison is a tenth of the cost of hashing it again.
        if bus.rom != self.rom:
            self.rom = bytes(bus.rom)
            self.rom_digest = hashlib.sha256(self.rom).digest()


# One cache per machine, dropped with it; machine.py stays unaware of digests.
_CACHES: weakref.WeakKeyDictionary[Machine, _MemoryCache] = weakref.WeakKeyDictionary()


def _memory(machine: Machine, *, cached: bool) -> _MemoryCache:
    bus = machine.bus
    if not cached:
        return _MemoryCache(bus, track=False)
    cache = _CACHES.get(machine)
    if cache is None or not cache.is_current_for(bus):
        cache = _CACHES[machine] = _MemoryCache(bus, track=True)
    else:
        cache.update(bus)
    return cache


# -- differences --------------------------------------------------------------------------------


def _field_differences(fa: list[Field], fb: list[Field]) -> list[Difference]:
    va, vb = dict(fa), dict(fb)
    paths = [path for path, _ in fa] + [path for path, _ in fb if path not in va]
    out = []
    for path in paths:
        a, b = va.get(path, ABSENT), vb.get(path, ABSENT)
        # Compare encodings, not values: 1 == True in Python but not in the digest.
        if a is ABSENT or b is ABSENT or _leaf_code(a) != _leaf_code(b):  # type: ignore[arg-type]
            out.append(Difference(path, a, b))
    return out


def _ram_bytes(machine: Machine, page: int) -> bytes:
    bus = machine.bus
    if page not in bus.ram_pages:
        return b""
    return _read_page(bus, page)


def _memory_difference(name: str, a: bytes, b: bytes, base: int) -> Difference:
    if not a or not b:
        return Difference(name, a[:1] or ABSENT, b[:1] or ABSENT, "RAM in one machine only")
    differing = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    first = differing[0]
    note = f"first difference at {base + first:#010x}, {len(differing)} byte(s) differ"
    return Difference(name, a[first], b[first], note)
