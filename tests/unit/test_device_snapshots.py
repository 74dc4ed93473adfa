"""Every built-in device kind survives savevm/loadvm in any state its VMSTATE allows.

For each kind in `vm.devices.registry.BUILTIN_DEVICES` (so a device added later, or one
whose VMSTATE is rewritten, is covered without touching this file):

- Random saved state. A strategy is built from the device's own `VMStateDescription`
  (fields, nested structs and subsections, at any version from `minimum_version` on), the
  drawn section is loaded into the device of a fresh machine with `vm.vmstate.load` (so the
  state is valid by construction), the machine is saved and loaded into a fresh machine of
  the same configuration with a random `section_order_seed`, and the two must save the same
  section and have the same state digest (`vm.digest`), with no field-level difference.
- Use through MMIO. The device (optionally from a random saved state) is driven through its
  window with random reads and writes, and optionally a short idle run lets host-side work
  reach it (block completions, received packets), after which no guest-paced timer may be
  left due (a device timer re-armed at or before now would fire forever); then every
  instance attribute must be saved, host-side or an interrupt line, and the same round trip
  must hold. The construction-time
  half of the attribute check is tests/unit/test_snapshot.py's static
  `test_every_builtin_device_saves_all_of_its_guest_state`; this one is about what appears
  or changes once the device is used, which the digest round trip also catches when it is
  nested inside a saved attribute.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import vm.clock
import vm.machine
from vm import Machine, MachineConfig, RunResult, StopReason, vmstate
from vm.asm import assemble
from vm.boot import ROM_BASE, ROM_SIZE
from vm.clock import ClockKind
from vm.config import DEFAULT_DEVICES, DeviceSpec
from vm.cpu import GuestTrap
from vm.devices import Device, IrqLine
from vm.devices.registry import BUILTIN_DEVICES, device_class
from vm.digest import DEVICE_INFRASTRUCTURE, component_digests, diff, digest
from vm.memory import RAM_BASE
from vm.snapshot import SnapshotError, loadvm, savevm
from vm.vmstate import (
    ArrayKind,
    BoolKind,
    BytesKind,
    FifoKind,
    IntKind,
    Kind,
    OptionalKind,
    StructKind,
    VMStateDescription,
    field_names,
)

KINDS = sorted(BUILTIN_DEVICES)
RAM_SIZE = 64 << 10
MASK32 = 0xFFFF_FFFF
# Bounds on generated sizes: a bounded Bytes or Array may allow megabytes (the block
# device's disk), which would only make examples slow; larger fixed sizes get sparse patches.
BYTES_CAP = 1024
ARRAY_CAP = 64
PATCH_CAP = 64
# Where the free-slot search for a device without a default place starts (above the
# virtio-mmio slots QEMU virt has at 0x1000_1000..0x1000_8fff).
FREE_SLOT_START = 0x2000_0000
MISSING: Any = object()

# The hart sleeps in WFI with nothing enabled in mie, so a run lets host time pass to the
# next host event (block completions, packets) until nothing is left or the budget ends.
IDLE_LOOP = assemble("1:\n    wfi\n    j 1b", base=RAM_BASE)
DMA_AREA = RAM_BASE + RAM_SIZE // 2  # where DMA-looking values point: away from IDLE_LOOP
RUN_LIMIT = 64


# -- the machine for each kind ----------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    config: MachineConfig
    name: str  # the device under test


def _window(spec: DeviceSpec) -> tuple[int, int]:
    return spec.base, spec.base + device_class(spec.kind).size


def _overlaps(window: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(window[0] < end and base < window[1] for base, end in taken)


def _free_slot(kind: str, specs: tuple[DeviceSpec, ...]) -> DeviceSpec:
    """A spec for `kind` at the first 4 KiB-aligned address whose window overlaps nothing
    (devices, the boot ROM, RAM), with an unused PLIC source."""
    size = device_class(kind).size
    taken = [_window(s) for s in specs]
    taken += [(ROM_BASE, ROM_BASE + ROM_SIZE), (RAM_BASE, RAM_BASE + RAM_SIZE)]
    step = -(-size // 0x1000) * 0x1000
    base = FREE_SLOT_START
    while _overlaps((base, base + size), taken):
        base += step
    used_irqs = {s.irq for s in specs}
    irq = next(n for n in range(1, 96) if n not in used_irqs)
    names = {s.name for s in specs}
    name = next(f"{kind}{i}" for i in range(len(names) + 1) if f"{kind}{i}" not in names)
    return DeviceSpec(kind, name, base, irq=irq)


@functools.cache
def setup_for(kind: str) -> Setup:
    """The default virt devices plus `kind`: the default one of that kind if virt has one,
    else the device module's `default_spec()` (moved to a free slot if it collides with
    a default device), else a free slot."""
    defaults = tuple(DEFAULT_DEVICES)
    for spec in defaults:
        if spec.kind == kind:
            return Setup(MachineConfig(ram_size=RAM_SIZE, devices=defaults), spec.name)
    module = importlib.import_module(BUILTIN_DEVICES[kind].__module__)
    default_spec = getattr(module, "default_spec", None)
    spec = default_spec() if callable(default_spec) else None
    taken = [_window(s) for s in defaults]
    if (
        spec is None
        or spec.name in {s.name for s in defaults}
        or spec.irq in {s.irq for s in defaults if s.irq is not None}
        or _overlaps(_window(spec), taken)
    ):
        spec = _free_slot(kind, defaults)
    return Setup(MachineConfig(ram_size=RAM_SIZE, devices=(*defaults, spec)), spec.name)


def description(device: Device) -> VMStateDescription:
    desc = type(device).VMSTATE
    assert isinstance(desc, VMStateDescription), f"{device.name} declares no VMSTATE"
    return desc


# -- strategies from a VMStateDescription -----------------------------------------------------


def section_strategy(
    desc: VMStateDescription, reset: Mapping[str, Any] | None
) -> st.SearchStrategy[dict[str, Any]] | None:
    """Saved sections `desc` accepts, at any version it loads, with each subsection present
    or not. `reset` is what a freshly reset device saves for this section (None for a
    subsection that is not needed at reset): fields of a kind no strategy is known for keep
    that value. None if some field can be neither generated nor taken from `reset`."""
    reset_fields = reset["fields"] if reset is not None else {}
    reset_subsections = {s["name"]: s for s in reset["subsections"]} if reset is not None else {}
    optional_subsections = []
    for sub in desc.subsections:
        sub_strategy = section_strategy(sub.desc, reset_subsections.get(sub.desc.name))
        if sub_strategy is not None:  # else never included: absent = left at reset
            optional_subsections.append(st.none() | sub_strategy)
    subsections = st.tuples(*optional_subsections).map(
        lambda subs: [sub for sub in subs if sub is not None]
    )
    per_version = []
    for version in range(desc.minimum_version, desc.version + 1):
        fields = fields_strategy(desc.fields, reset_fields, version)
        if fields is not None:
            per_version.append(
                st.fixed_dictionaries(
                    {
                        "name": st.just(desc.name),
                        "version": st.just(version),
                        "fields": fields,
                        "subsections": subsections,
                    }
                )
            )
    return st.one_of(per_version) if per_version else None


def fields_strategy(
    fields: tuple[vmstate.Field, ...], reset: Mapping[str, Any], version: int
) -> st.SearchStrategy[dict[str, Any]] | None:
    """The `fields` a section saved at `version` carries (those with `since <= version`)."""
    out = {}
    for f in fields:
        if f.since > version:
            continue
        reset_value = reset.get(f.attr, MISSING)
        strategy = value_strategy(f.kind, reset_value, version)
        if strategy is None:
            # A custom Kind (the block device's Request and Completion records): there is
            # no generic way to make its values, so the field stays at its reset value.
            if reset_value is MISSING:
                return None
            strategy = st.just(reset_value)
        out[f.attr] = strategy
    return st.fixed_dictionaries(out)


def value_strategy(kind: Kind, reset: Any, version: int) -> st.SearchStrategy[Any] | None:
    """Saved values of `kind`, or None for a kind this builder does not know."""
    if isinstance(kind, IntKind):
        return int_strategy(kind)
    if isinstance(kind, BoolKind):
        return st.booleans()
    if isinstance(kind, BytesKind):
        return bytes_strategy(kind, reset)
    if isinstance(kind, FifoKind):
        return st.binary(max_size=min(kind.capacity, BYTES_CAP))
    if isinstance(kind, OptionalKind):
        return st.none() | int_strategy(kind.inner)
    if isinstance(kind, ArrayKind):
        return array_strategy(kind, reset, version)
    if isinstance(kind, StructKind):
        return fields_strategy(kind.fields, reset if isinstance(reset, dict) else {}, version)
    return None


def int_strategy(kind: IntKind) -> st.SearchStrategy[int]:
    """Any value of the kind's range, often a small one (a count, an index, a command) or,
    where it fits, an address in the upper half of RAM (a DMA buffer, a ring), so that
    random registers describe work a device can actually do."""
    choices = [st.integers(kind.low, kind.high), st.integers(max(kind.low, 0), min(kind.high, 3))]
    if kind.high >= RAM_BASE + RAM_SIZE:
        choices.append(st.integers(DMA_AREA, RAM_BASE + RAM_SIZE - 1))
    return st.one_of(choices)


def patched_bytes(base: bytes) -> st.SearchStrategy[bytes]:
    """`base` with a few bytes changed (for values too long to draw whole)."""
    patches = st.dictionaries(
        st.integers(0, len(base) - 1), st.integers(0, 255), max_size=PATCH_CAP
    )

    def build(patch: dict[int, int]) -> bytes:
        data = bytearray(base)
        for index, byte in patch.items():
            data[index] = byte
        return bytes(data)

    return patches.map(build)


def bytes_strategy(kind: BytesKind, reset: Any) -> st.SearchStrategy[bytes]:
    """Bytes of the fixed length, or up to BYTES_CAP of the bounded one; a long value
    (the block device's disk, say) also as its reset value with a few bytes changed, so
    that its size, which may be guest-visible, is not always a small one."""
    if kind.length is not None:
        if kind.length <= BYTES_CAP:
            return st.binary(min_size=kind.length, max_size=kind.length)
        return patched_bytes(bytes(kind.length))
    short = st.binary(max_size=min(kind.max_length or 0, BYTES_CAP))
    if isinstance(reset, bytes) and len(reset) > BYTES_CAP:
        return short | patched_bytes(reset)
    return short


def array_strategy(kind: ArrayKind, reset: Any, version: int) -> st.SearchStrategy[Any] | None:
    element = value_strategy(kind.element, MISSING, version)
    if element is None:
        return None  # an array of a custom kind: left at its reset value
    if kind.length is None:
        return st.lists(element, max_size=min(kind.max_length or 0, ARRAY_CAP))
    if kind.length <= ARRAY_CAP:
        return st.lists(element, min_size=kind.length, max_size=kind.length)
    if not isinstance(reset, list):
        return None
    # A long fixed-length array: its reset value with a few elements changed.
    patches = st.dictionaries(st.integers(0, kind.length - 1), element, max_size=PATCH_CAP)
    return patches.map(lambda patch: [patch.get(i, item) for i, item in enumerate(reset)])


@functools.cache
def state_strategy(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    setup = setup_for(kind)
    device = Machine(setup.config).devices[setup.name]
    desc = description(device)
    strategy = section_strategy(desc, vmstate.save(desc, device))
    assert strategy is not None, f"{kind}: no section of {desc.name} can be generated"
    return strategy


# -- MMIO use -------------------------------------------------------------------------------


def register_blocks(window: int) -> list[int]:
    """Offsets where register blocks usually start: 0, each power of two from 0x100 on,
    and the last 16 bytes of the window (the CLINT's mtime, for one)."""
    powers = {1 << bit for bit in range(8, window.bit_length()) if 1 << bit < window}
    return sorted({0, *powers, max(0, window - 16) & ~3})


@functools.cache
def live_offsets(kind: str) -> tuple[int, ...]:
    """Word offsets in `kind`'s window where a 32-bit access does something, found by probing
    a scratch machine: the first 64 words of each likely register block are read and then
    written with all ones, and an offset is live if the read returns non-zero or the
    device's state digest changes. (A register that needs other values first, such as an
    acknowledge with nothing to acknowledge, can be missed: the first words of the window
    and random offsets are drawn too.)"""
    setup = setup_for(kind)
    machine = Machine(setup.config)
    base = setup.config.device(setup.name).base
    window = BUILTIN_DEVICES[kind].size
    candidates = sorted(
        {start + 4 * word for start in register_blocks(window) for word in range(64)}
        & set(range(0, window - 3, 4))
    )
    live = []
    state = component_digests(machine)[setup.name]
    for offset in candidates:
        returned = 0
        with contextlib.suppress(GuestTrap):
            returned = machine.bus.read(base + offset, 4)
            machine.bus.write(base + offset, 4, MASK32)
        before, state = state, component_digests(machine)[setup.name]
        if returned or state != before:
            live.append(offset)
    return tuple(live) or (0,)


@functools.cache
def mmio_ops(kind: str) -> st.SearchStrategy[list[tuple[bool, int, int, int]]]:
    """(write?, offset, size, value): mostly 32-bit writes, plus reads and the other widths
    the device accepts, at aligned offsets of its window: a third each at its live offsets,
    its first 16 words and anywhere."""
    cls = BUILTIN_DEVICES[kind]
    window = cls.size
    offsets = st.one_of(
        st.sampled_from(live_offsets(kind)),
        st.integers(0, min(window, 64) - 1),
        st.integers(0, window - 1),
    )
    sizes = st.sampled_from([4, *sorted(cls.access_sizes - {4})])
    values = st.one_of(
        st.integers(0, MASK32),
        st.integers(0, 3),  # commands, counts, enable bits
        st.sampled_from([MASK32, 0x8000_0000, 0x7FFF_FFFF]),
        st.integers(DMA_AREA, RAM_BASE + RAM_SIZE - 1),  # buffers in RAM
    )
    writes = st.sampled_from([True, True, False])  # shrinks towards a write

    def aligned(op: tuple[bool, int, int, int]) -> tuple[bool, int, int, int]:
        write, offset, size, value = op
        offset %= window  # never past the window, into a neighbour's
        return write, offset - offset % size, size, value & ((1 << (8 * size)) - 1)

    op = st.tuples(writes, offsets, sizes, values).map(aligned)
    return st.lists(op, min_size=1, max_size=16)


def drive(machine: Machine, device: Device, ops: list[tuple[bool, int, int, int]]) -> None:
    base = machine.config.device(device.name).base
    for write, offset, size, value in ops:
        with contextlib.suppress(GuestTrap):  # a width or offset the device refuses
            if write:
                machine.bus.write(base + offset, size, value)
            else:
                machine.bus.read(base + offset, size)


def run_idle_loop(machine: Machine, budget: int) -> RunResult:
    """Run IDLE_LOOP for at most `budget` instructions with the main loop's safety nets
    lowered (RUN_LIMIT idle wake-ups, RUN_LIMIT timer firings a boundary): a device timer
    that re-arms itself at or before now would otherwise cost up to 10,000 x 1,000 firings,
    seconds an example; `assert_no_timer_left_due` then names it."""
    machine.bus.write_bytes(RAM_BASE, IDLE_LOOP)
    machine.cpu.pc = RAM_BASE
    with contextlib.ExitStack() as limits:
        for module, name in ((vm.machine, "IDLE_WAKEUPS_MAX"), (vm.clock, "FIRINGS_MAX")):
            if hasattr(module, name):
                limits.enter_context(mock.patch.object(module, name, RUN_LIMIT))
        return machine.run(budget)


def assert_no_timer_left_due(machine: Machine, result: RunResult) -> None:
    """A run that ends by its budget or by idling has just fired every guest-paced (VIRTUAL,
    non-EXTERNAL) timer that was due, so none may still be due: one that is re-armed
    itself at or before the current time, and would fire forever."""
    assert result.reason is not getattr(StopReason, "NO_PROGRESS", None), result
    if result.reason not in (StopReason.BUDGET, StopReason.WFI_IDLE):
        return  # a stop inside an instruction ends the run before the timers' turn
    now = machine.vclock.now_ns(machine.cpu.icount)
    due = [
        (getattr(getattr(t.callback, "__self__", None), "name", t.callback), t.deadline_ns)
        for t in machine.timer_lists[ClockKind.VIRTUAL].timers
        if not t.external and t.expired(now)
    ]
    assert not due, f"virtual timers still due at {now} ns after {result}: {due}"


def attributes(device: Device) -> dict[str, object]:
    attrs = dict(getattr(device, "__dict__", {}))
    for klass in type(device).__mro__:
        for slot in klass.__dict__.get("__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(device, slot):
                attrs[slot] = getattr(device, slot)
    return attrs


def unsaved_attributes(device: Device) -> set[str]:
    """Instance attributes that are neither saved (by the first component of a VMSTATE
    path), nor HOST_SIDE, nor base-class infrastructure, nor an interrupt line (whose
    level the receiver saves and post_load re-derives)."""
    saved = {path.split(".")[0] for path in field_names(description(device))}
    allowed = saved | type(device).HOST_SIDE | DEVICE_INFRASTRUCTURE
    return {
        attr
        for attr, value in attributes(device).items()
        if attr not in allowed and not isinstance(value, IrqLine)
    }


# -- the round trip ---------------------------------------------------------------------------


def round_trip(original: Machine, seed: int) -> Machine:
    """`original` saved and loaded into a fresh machine of its configuration. A refusal is
    asserted on outside the `except`, so its traceback stays in this file: Hypothesis
    formats the traceback of every failing example it tries while shrinking, and one deep
    into vm/ (chained or not) costs a quarter of a second each."""
    before = digest(original)
    refusal = None
    try:
        data = savevm(original)
    except SnapshotError as exc:
        refusal = f"savevm refused the machine: {exc}"
    assert refusal is None, refusal
    assert digest(original) == before, "savevm changed the machine it saved"
    loaded = Machine(original.config)
    try:
        loadvm(loaded, data, section_order_seed=seed)
    except SnapshotError as exc:
        refusal = f"loadvm refused what savevm wrote: {exc}"
    assert refusal is None, refusal
    return loaded


def assert_same(original: Machine, loaded: Machine) -> None:
    for name, device in original.devices.items():
        desc = description(device)
        assert vmstate.save(desc, loaded.devices[name]) == vmstate.save(desc, device), name
    differences = diff(original, loaded)
    assert digest(loaded) == digest(original), [str(d) for d in differences]
    assert differences == []


seeds = st.integers(0, 2**32 - 1)

# Half the profile's examples for each of these 2 x len(KINDS) property tests keeps the file
# within its time budget under `ci` (nightly still draws 1000 each). The explain phase is
# left out: on a failure it costs several seconds per test and adds nothing the falsifying
# example (ops, states and seeds all labelled) does not already show.
FAST = settings(
    max_examples=max(10, settings.default.max_examples // 2),
    phases=[phase for phase in settings.default.phases if phase is not Phase.explain],
)


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_builtin_kind_gets_a_machine_with_its_device(kind):
    setup = setup_for(kind)
    device = Machine(setup.config).devices[setup.name]
    assert device.kind == kind
    assert isinstance(type(device).VMSTATE, VMStateDescription), kind
    # The fallback for a kind with neither a default place nor `default_spec` (none yet).
    extra = _free_slot(kind, setup.config.devices)
    machine = Machine(MachineConfig(ram_size=RAM_SIZE, devices=(*setup.config.devices, extra)))
    assert machine.devices[extra.name].kind == kind


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(data=st.data())
def test_any_saved_state_of_a_device_survives_savevm_and_loadvm(kind, data):
    setup = setup_for(kind)
    original = Machine(setup.config)
    device = original.devices[setup.name]
    desc = description(device)
    state = data.draw(state_strategy(kind), label="state")
    vmstate.load(desc, device, state)
    loaded = round_trip(original, data.draw(seeds, label="section_order_seed"))
    assert_same(original, loaded)


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(data=st.data())
def test_a_device_used_through_mmio_keeps_all_its_state_in_its_vmstate(kind, data):
    setup = setup_for(kind)
    machine = Machine(setup.config)
    device = machine.devices[setup.name]
    desc = description(device)
    if data.draw(st.booleans(), label="from a random saved state"):
        vmstate.load(desc, device, data.draw(state_strategy(kind), label="state"))
    constructed = set(attributes(device))
    drive(machine, device, data.draw(mmio_ops(kind), label="mmio"))
    if data.draw(st.booleans(), label="run"):
        result = run_idle_loop(machine, data.draw(st.integers(1, 200), label="budget"))
        assert_no_timer_left_due(machine, result)
    unsaved = unsaved_attributes(device)
    appeared = sorted(unsaved - constructed)
    assert not unsaved, (
        f"{kind}: after use, attributes neither saved, HOST_SIDE nor an IrqLine: "
        f"{sorted(unsaved)} (appeared after construction: {appeared})"
    )
    loaded = round_trip(machine, data.draw(seeds, label="section_order_seed"))
    assert_same(machine, loaded)
