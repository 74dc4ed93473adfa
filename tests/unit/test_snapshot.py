"""savevm/loadvm of the whole machine (vm/snapshot.py): a guest program that uses the UART,
the CLINT's mtimecmp and msip, RAM stores, CSRs, WFI warps and a guest reset is run part
way, saved, loaded into a fresh machine, and both machines must then be equal field by
field and continue identically. Broken snapshots (another configuration, bad magic, a
newer format, every truncation, random byte flips, hostile bodies with a valid checksum)
must raise SnapshotError and leave the target machine exactly as it was."""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import Machine, MachineConfig, StopReason
from vm.asm import Program, assemble, assemble_program
from vm.clock import ClockKind, Timer
from vm.config import CLINT, FINISHER, UART0, DeviceSpec, config_hash
from vm.cpu import CpuState
from vm.csr import MIE_WRITABLE, MIP_MTIP, MSTATUS_MIE, MSTATUS_MPIE
from vm.devices import Device, IrqLine
from vm.devices.registry import BUILTIN_DEVICES, device_class
from vm.devices.uart import Uart16550
from vm.digest import digest
from vm.loader import load_program
from vm.memory import PAGE_SIZE
from vm.snapshot import (
    CPU_VMSTATE,
    FORMAT_VERSION,
    MAGIC,
    SnapshotError,
    loadvm,
    read_header,
    savevm,
    section_order,
)
from vm.vmstate import field_names

RAM_BASE = 0x8000_0000
RAM_SIZE = 64 << 10
DEVICES = (FINISHER, CLINT, UART0)
PASSES = RAM_BASE + 0x8000  # outside the boot image, so it survives the guest reset
MASK32 = 0xFFFF_FFFF
MASK64 = (1 << 64) - 1

# Sets up the UART (divisor through DLAB, scratch, IER), counter CSRs and the CLINT timer,
# then loops: an LCG stored round a RAM buffer, a letter on the UART and msip raised every
# 64 iterations, a WFI (a warp of virtual time to the timer) every 256. The handler logs
# mcause, minstret, mcycle and mtime per interrupt, re-arms the timer or clears msip. The
# first pass ends in a guest reset (finisher 0x7777), the second passes.
GUEST = r"""
    .equ UART, 0x10000000
    .equ CLINT, 0x02000000
    .equ MTIMECMP, 0x02004000
    .equ MTIME, 0x0200bff8
    .equ FINISHER, 0x00100000
    .equ PASSES, 0x80008000
_start:
    la t0, handler
    csrw mtvec, t0
    la t0, save_area
    csrw mscratch, t0
    csrw minstret, zero          # a negative minstret offset
    li t0, 0x7fffffff
    csrw mcycleh, t0             # a large mcycle offset
    li s0, UART
    li s1, CLINT
    la s2, buffer
    li s3, 0                     # iteration
    li s4, 12345                 # LCG state
    li s5, 0                     # interrupts taken
    li t0, 0x80
    sb t0, 3(s0)                 # DLAB
    li t0, 0x0c
    sb t0, 0(s0)
    li t0, 0x01
    sb t0, 1(s0)
    li t0, 0x03
    sb t0, 3(s0)                 # 8N1
    li t0, 0x5a
    sb t0, 7(s0)                 # scratch register
    li t0, 0x05
    sb t0, 1(s0)                 # IER
    call arm_timer
    li t0, 0x88                  # MTIE | MSIE
    csrw mie, t0
    csrsi mstatus, 8
loop:
    li t1, 1103515245
    mul s4, s4, t1
    li t1, 12345
    add s4, s4, t1
    andi t1, s3, 255
    slli t1, t1, 2
    add t1, s2, t1
    sw s4, 0(t1)
    andi t1, s3, 63
    bnez t1, 1f
    srli t2, s4, 27
    addi t2, t2, 65
    sb t2, 0(s0)                 # a letter on the UART
    li t2, 1
    sw t2, 0(s1)                 # msip = 1: a software interrupt
1:
    andi t1, s3, 255
    li t2, 128
    bne t1, t2, 2f
    wfi
2:
    addi s3, s3, 1
    li t1, ITERS
    blt s3, t1, loop
    li t1, PASSES
    lw t2, 0(t1)
    addi t2, t2, 1
    sw t2, 0(t1)
    li t0, 0x7777
    li t1, 1
    beq t2, t1, 3f
    li t0, 0x5555
3:
    li t1, FINISHER
    sw t0, 0(t1)
4:
    j 4b

arm_timer:
    li t0, MTIME
    lw t1, 0(t0)
    addi t1, t1, PERIOD
    li t0, MTIMECMP
    li t2, -1
    sw t2, 4(t0)
    sw t1, 0(t0)
    sw zero, 4(t0)
    ret

handler:
    csrrw a0, mscratch, a0
    sw t0, 0(a0)
    sw t1, 4(a0)
    sw t2, 8(a0)
    sw ra, 12(a0)
    csrr t0, mcause
    la t1, log
    andi t2, s5, 63
    slli t2, t2, 4
    add t1, t1, t2
    sw t0, 0(t1)
    csrr t2, minstret
    sw t2, 4(t1)
    csrr t2, mcycle
    sw t2, 8(t1)
    li t2, MTIME
    lw t2, 0(t2)
    sw t2, 12(t1)
    addi s5, s5, 1
    bltz t0, interrupt
    li t0, 0x00ff3333            # an exception: fail
    li t1, FINISHER
    sw t0, 0(t1)
interrupt:
    andi t0, t0, 0xff
    li t2, 3
    beq t0, t2, software
    call arm_timer
    j out
software:
    sw zero, 0(s1)
out:
    lw t0, 0(a0)
    lw t1, 4(a0)
    lw t2, 8(a0)
    lw ra, 12(a0)
    csrrw a0, mscratch, a0
    mret

    .align 12                    # data on its own page: stores do not hit translated code
save_area:
    .space 16
log:
    .space 1024
buffer:
    .space 1024
"""

_PROGRAMS: dict[tuple[int, int], Program] = {}


def guest_program(iters: int = 600, period: int = 40) -> Program:
    key = (iters, period)
    if key not in _PROGRAMS:
        source = f".equ ITERS, {iters}\n.equ PERIOD, {period}\n{GUEST}"
        _PROGRAMS[key] = assemble_program(source, base=RAM_BASE)
    return _PROGRAMS[key]


def config(shift: int = 0, *, ram_size: int = RAM_SIZE) -> MachineConfig:
    return MachineConfig(ram_size=ram_size, icount_shift=shift, devices=DEVICES)


def booted(shift: int = 0, *, hot: int = 24, program: Program | None = None) -> Machine:
    """A machine with the guest loaded and booted through the reset vector (so the ROM and
    the boot image a guest reset copies again are both in use)."""
    program = program or guest_program()
    m = Machine(config(shift), hot_block_entries=hot)
    m.load_image(RAM_BASE, program.image)
    m.boot(RAM_BASE)
    return m


def run_for(m: Machine, budget: int, *, single_step: bool = False) -> None:
    """Run exactly `budget` more instructions (across guest resets)."""
    target = m.cpu.icount + budget
    while m.cpu.icount < target:
        result = m.run(target - m.cpu.icount, single_step=single_step)
        assert result.reason in (StopReason.BUDGET, StopReason.FINISHER_RESET), result


def finish(m: Machine, *, single_step: bool = False) -> list[tuple[StopReason, int]]:
    """Run to the guest's pass; the stops other than budget ends, with their icounts."""
    stops = []
    for _ in range(1000):
        result = m.run(3000, single_step=single_step)
        if result.reason is not StopReason.BUDGET:
            stops.append((result.reason, m.cpu.icount))
        if result.reason is StopReason.FINISHER_PASS:
            return stops
        assert result.reason in (StopReason.BUDGET, StopReason.FINISHER_RESET), result
    raise AssertionError("the guest did not finish")


def timer_deadlines(m: Machine) -> list[int | None]:
    return [t.deadline_ns for t in m.timer_lists[ClockKind.VIRTUAL].timers]


def device_state(device: Device) -> dict[str, object]:
    """Every instance attribute of a device that is guest state (what vm.digest counts)."""
    skip = {"host", "spec", "name"} | type(device).HOST_SIDE
    state: dict[str, object] = {}
    for attr, value in vars(device).items():
        if attr in skip:
            continue
        if isinstance(value, IrqLine):
            value = value.level
        elif isinstance(value, Timer):
            value = value.deadline_ns
        elif isinstance(value, bytearray | list):
            value = list(value)
        state[attr] = value
    return state


def observe(m: Machine) -> dict[str, object]:
    """The machine's guest state, field by field (so a failing comparison names the field)."""
    cpu = m.cpu
    state: dict[str, object] = {f"cpu.{name}": getattr(cpu, name) for name in CpuState.__slots__}
    for name in ("fault_loop", "leave_block"):
        del state[f"cpu.{name}"]  # per-run flags, reset by every run
    state["cpu.x"] = list(cpu.x)
    state["cpu.mcycle64"] = cpu.mcycle64()
    state["cpu.minstret64"] = cpu.minstret64()
    state["ram"] = hashlib.sha256(bytes(m.bus.ram)).hexdigest()
    state["rom"] = bytes(m.bus.rom)
    state["boot_image"] = list(m.boot_image)
    state["vclock.bias_ns"] = m.vclock.bias_ns
    state["virtual timers"] = timer_deadlines(m)
    for name, device in m.devices.items():
        for attr, value in device_state(device).items():
            state[f"{name}.{attr}"] = value
    return state


def assert_same(a: Machine, b: Machine) -> None:
    sa, sb = observe(a), observe(b)
    assert sa.keys() == sb.keys()
    differing = {key: (sa[key], sb[key]) for key in sa if sa[key] != sb[key]}
    assert not differing
    if bytes(a.bus.ram) != bytes(b.bus.ram):  # pragma: no cover - the hash above says so
        raise AssertionError("RAM differs")
    if DIGEST is not None:
        assert DIGEST(a) == DIGEST(b)


def _find_digest() -> Callable[[Machine], bytes] | None:
    """vm.digest.digest when the lead's digest module is present (it is being written
    alongside this one); the equality checks below use it when it is there."""
    if importlib.util.find_spec("vm.digest") is None:  # pragma: no cover
        return None
    from vm.digest import digest

    return digest


DIGEST = _find_digest()


def reseal(header: dict[str, Any], body: object) -> bytes:
    """A snapshot with `body` (any data) and a checksum that matches it, to reach the
    validation behind the checksum."""
    raw = msgpack.packb(body, use_bin_type=True)
    header = {**header, "body_sha256": hashlib.sha256(raw).digest()}
    return msgpack.packb(header, use_bin_type=True) + raw


def split(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return unpacker.unpack(), unpacker.unpack()


def assert_refused(target: Machine, data: bytes, match: str | None = None) -> None:
    """loadvm raises SnapshotError and leaves `target` exactly as it was."""
    before = observe(target)
    before_snapshot = savevm(target)
    with pytest.raises(SnapshotError, match=match):
        loadvm(target, data)
    assert observe(target) == before
    assert savevm(target) == before_snapshot


# A target that has run part of the guest, so "unchanged" is checked on real state.
@pytest.fixture(scope="module")
def snapshot() -> bytes:
    m = booted()
    run_for(m, 5_000)
    return savevm(m)


@pytest.fixture
def target() -> Machine:
    m = booted()
    run_for(m, 2_345)
    return m


# -- the loaded machine is the saved one --------------------------------------------------------


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("at", [0, 1, 777, 5_000, 11_500, 15_000])
def test_a_loaded_machine_equals_the_saved_one_field_by_field(shift, at):
    original = booted(shift)
    run_for(original, at)
    data = savevm(original)
    loaded = Machine(config(shift))
    loadvm(loaded, data)
    assert_same(original, loaded)
    assert savevm(loaded) == data


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("at", [1, 4_321, 11_500, 16_000])
@pytest.mark.parametrize("mode", ["interpreted", "translated", "single-step"])
def test_a_loaded_machine_continues_exactly_as_the_original(shift, at, mode):
    original = booted(shift)
    run_for(original, at)
    data = savevm(original)
    console_at_save = len(original.console)
    # The loaded machine may run on another execution path: guest state must not care.
    loaded = Machine(config(shift), hot_block_entries=1 if mode == "translated" else 24)
    loadvm(loaded, data)
    stops = finish(loaded, single_step=mode == "single-step")
    assert finish(original) == stops
    assert stops[-1][0] is StopReason.FINISHER_PASS
    assert bytes(loaded.console) == bytes(original.console[console_at_save:])
    assert loaded.console, "the guest printed after the snapshot"
    assert_same(original, loaded)


def test_the_guest_uses_what_the_snapshot_must_carry():
    """The continuation tests above are only as strong as the guest: check it really warps
    virtual time, counts with CSR offsets, takes both CLINT interrupts and resets."""
    m = booted(3)
    stops = finish(m)
    assert [reason for reason, _ in stops] == [StopReason.FINISHER_RESET, StopReason.FINISHER_PASS]
    assert m.vclock.bias_ns > 0
    assert m.cpu.mcycle_delta > 1 << 62 and m.cpu.minstret_delta < 0
    log = struct.unpack("<256I", m.bus.read_bytes(guest_program().address_of("log"), 1024))
    causes = set(log[0::4]) - {0}
    assert causes == {0x8000_0003, 0x8000_0007}
    uart = m.devices["uart0"]
    assert (uart.divisor, uart.scr, uart.ier) == (0x010C, 0x5A, 0x05)


@pytest.mark.parametrize("shift", [0, 2])
def test_a_timer_pending_at_the_snapshot_fires_at_the_same_icount_in_both(shift):
    original = booted(shift)
    run_for(original, 6_000)
    clint = original.devices["clint"]
    deadline = clint.timer.deadline_ns
    assert deadline is not None and deadline > original.virtual_ns()
    assert not original.cpu.mip & MIP_MTIP
    data = savevm(original)
    loaded = Machine(config(shift))
    loadvm(loaded, data)
    handler = guest_program().address_of("handler")

    def interrupts(m: Machine) -> list[tuple[int, int, int]]:
        m.set_breakpoints({handler})
        seen = []
        while True:
            result = m.run(50_000)
            if result.reason is StopReason.BREAKPOINT:
                seen.append((m.cpu.icount, m.cpu.mcause, m.vclock.bias_ns))
            elif result.reason is StopReason.FINISHER_PASS:
                return seen
            else:
                assert result.reason in (StopReason.BUDGET, StopReason.FINISHER_RESET)

    expected = interrupts(original)
    first_timer = next(entry for entry in expected if entry[1] == 0x8000_0007)
    # The timer pending at the snapshot fires first, at the icount its deadline gives.
    assert original.vclock.icount_at(deadline, 0) <= first_timer[0]
    assert interrupts(loaded) == expected
    assert_same(original, loaded)


def test_a_guest_reset_after_loading_copies_the_saved_boot_image_in_again():
    original = booted()
    run_for(original, 9_000)  # before the first pass ends in a reset
    loaded = Machine(config())
    loadvm(loaded, savevm(original))
    assert loaded.boot_image == original.boot_image
    assert loaded.bus.rom == original.bus.rom
    stops = finish(loaded)
    assert [reason for reason, _ in stops] == [StopReason.FINISHER_RESET, StopReason.FINISHER_PASS]
    assert finish(original) == stops


def test_after_loading_the_virtual_timer_list_is_marked_changed(snapshot):
    m = Machine(config())
    m.timer_lists[ClockKind.VIRTUAL].changed = False
    m.run(0)  # the main loop recomputes and clears the flag
    loadvm(m, snapshot)
    assert m.timer_lists[ClockKind.VIRTUAL].changed


def test_loading_into_a_machine_that_ran_other_code_leaves_none_of_that_code_running():
    original = booted()
    run_for(original, 4_000)  # before the guest reset, which runs the boot ROM again
    data = savevm(original)
    # The target translated other code at the very addresses the guest runs: the same
    # program with other constants in RAM, entered from other code in the ROM. Stale
    # translations of either would show after the load (the ROM's at the guest reset).
    used = Machine(config(), hot_block_entries=1)
    used.load_image(RAM_BASE, guest_program(iters=300, period=25).image)
    rom_code = assemble_program("li a0, 7\nli t0, 0x80000000\njr t0", base=0x1000).image
    used.bus.rom[: len(rom_code)] = rom_code
    used.cpu.pc = 0x1000
    run_for(used, 6_000)
    assert used._regions  # translated code exists
    loadvm(used, data)
    assert_same(original, used)
    assert finish(used) == finish(original)
    assert_same(original, used)


def test_loading_zeroes_the_pages_the_snapshot_leaves_out(snapshot):
    m = Machine(config())
    m.bus.write_bytes(RAM_BASE + 0xC000, b"\xff" * 100)  # a page that is zero in the snapshot
    loadvm(m, snapshot)
    assert m.bus.read_bytes(RAM_BASE + 0xC000, 100) == bytes(100)


# -- section order ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_device_sections_load_in_any_order_with_the_same_result(seed):
    original = booted(2)
    run_for(original, 7_000)
    data = savevm(original)
    in_order = Machine(config(2))
    loadvm(in_order, data)
    shuffled = Machine(config(2))
    loadvm(shuffled, data, section_order_seed=seed)
    assert_same(in_order, shuffled)
    assert finish(shuffled) == finish(in_order)
    assert_same(in_order, shuffled)


def test_the_section_order_is_a_permutation_chosen_by_the_seed():
    names = [f"dev{i}" for i in range(8)]
    assert section_order(names, None) == names
    orders = {tuple(section_order(names, seed)) for seed in range(20)}
    assert all(sorted(order) == names for order in orders)
    assert len(orders) > 10
    assert section_order(names, 5) == section_order(reversed(names), 5)


# -- the format ---------------------------------------------------------------------------------


def test_the_header_carries_magic_version_configuration_and_shift():
    m = booted(4)
    run_for(m, 1_000)
    header = read_header(savevm(m))
    assert header.format == FORMAT_VERSION
    assert header.config_hash == config_hash(m.config)
    assert header.icount_shift == 4
    assert header.icount == 1_000


def test_all_zero_pages_are_left_out_and_sections_are_keyed_by_device_name(snapshot):
    header, body = split(snapshot)
    assert header["magic"] == MAGIC
    program_pages = -(-len(guest_program().image) // PAGE_SIZE)
    # The image, the PASSES page is still zero before the first pass ends.
    assert sorted(body["ram"]) == list(range(program_pages))
    assert all(len(page) == PAGE_SIZE for page in body["ram"].values())
    assert sorted(body["devices"]) == ["clint", "finisher", "uart0"]
    assert body["devices"]["clint"]["fields"]["timer"]["deadline_ns"] is not None


def test_the_cpu_description_covers_every_state_slot_of_the_cpu():
    derived = {"irq_pending", "fault_loop", "leave_block"}
    assert field_names(CPU_VMSTATE) == set(CpuState.__slots__) - derived


@pytest.mark.parametrize("kind", sorted(BUILTIN_DEVICES))
def test_every_builtin_device_saves_all_of_its_guest_state(kind):
    cls = BUILTIN_DEVICES[kind]
    spec = next((s for s in DEVICES if s.kind == kind), DeviceSpec(kind, kind, 0x0C00_0000))
    m = Machine(MachineConfig(ram_size=RAM_SIZE, devices=(spec,)))
    device = m.devices[spec.name]
    assert cls.VMSTATE is not None, f"{kind} declares no VMSTATE"
    saved = {path.split(".")[0] for path in field_names(cls.VMSTATE)}
    state = device_state(device)
    assert saved <= set(state)
    # Guest state neither saved nor declared HOST_SIDE may only be an interrupt line, whose
    # remembered level derives from saved registers (post_load re-derives it; the receiver
    # saves the level it has seen). Anything else would be lost by a snapshot.
    unsaved = {
        attr for attr in set(state) - saved if not isinstance(getattr(device, attr), IrqLine)
    }
    assert not unsaved, f"{kind}: guest state neither saved nor HOST_SIDE: {sorted(unsaved)}"


def test_a_machine_of_the_default_configuration_round_trips():
    missing = [s.kind for s in MachineConfig().devices if device_class(s.kind).VMSTATE is None]
    assert not missing, f"default devices without a VMSTATE: {missing}"
    original = Machine()
    original.load_image(RAM_BASE, guest_program().image)
    original.boot(RAM_BASE)
    run_for(original, 5_000)
    loaded = Machine()
    loadvm(loaded, savevm(original))
    assert_same(original, loaded)
    assert finish(loaded) == finish(original)
    assert_same(original, loaded)


# -- what savevm refuses ------------------------------------------------------------------------


def test_savevm_refuses_a_device_without_vmstate_and_names_it(monkeypatch):
    monkeypatch.setattr(Uart16550, "VMSTATE", None)
    with pytest.raises(SnapshotError, match="'uart0'"):
        savevm(booted())


def test_savevm_refuses_a_timer_that_no_device_section_saves():
    m = booted()
    m.new_virtual_timer(lambda: None)
    with pytest.raises(SnapshotError, match="virtual timer"):
        savevm(m)


def test_savevm_refuses_a_scheduled_bottom_half():
    m = booted()
    m.new_bottom_half(lambda: None, replay=True).schedule()
    with pytest.raises(SnapshotError, match="bottom half"):
        savevm(m)


def test_savevm_refuses_a_device_holding_a_value_its_description_cannot_save():
    m = booted()
    m.devices["uart0"].lcr = 0x100
    with pytest.raises(SnapshotError, match="lcr"):
        savevm(m)


# -- what loadvm refuses, changing nothing ------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (MachineConfig(ram_size=128 << 10, devices=DEVICES), "configuration"),
        (MachineConfig(ram_size=RAM_SIZE, icount_shift=1, devices=DEVICES), "shift"),
        (MachineConfig(ram_size=RAM_SIZE, devices=(FINISHER, CLINT)), "configuration"),
    ],
)
def test_a_snapshot_of_another_configuration_is_refused(snapshot, other, match):
    m = Machine(other)
    m.bus.write_bytes(RAM_BASE, b"\x01\x02")
    assert_refused(m, snapshot, match)


def test_a_snapshot_with_bad_magic_is_refused(snapshot, target):
    header, body = split(snapshot)
    assert_refused(target, reseal({**header, "magic": b"detfuzz-savevn"}, body), "magic")
    assert_refused(target, b"\x00" * 64, "not a detfuzz snapshot")
    assert_refused(target, msgpack.packb([1, 2, 3]), "magic")


def test_a_snapshot_of_a_newer_format_is_refused(snapshot, target):
    header, body = split(snapshot)
    newer = reseal({**header, "format": FORMAT_VERSION + 1}, {"anything": "else"})
    assert_refused(target, newer, "newer")
    assert_refused(target, reseal({**header, "format": 0}, body), "not supported")
    assert_refused(target, reseal({**header, "format": "1"}, body), "format")


def test_every_truncation_of_a_snapshot_is_refused_and_changes_nothing(snapshot, target):
    before = observe(target)
    for length in range(len(snapshot)):
        with pytest.raises(SnapshotError):
            loadvm(target, snapshot[:length])
    assert observe(target) == before


def test_flipping_a_byte_anywhere_is_refused_and_changes_nothing(snapshot, target):
    before = observe(target)
    header_length = len(msgpack.packb(split(snapshot)[0], use_bin_type=True))
    # Every byte of the header and of the start of the body, then a sample of the body
    # (the checksum treats all of its bytes alike).
    positions = [*range(header_length + 256), *range(header_length + 256, len(snapshot), 7)]
    for position in positions:
        data = bytearray(snapshot)
        data[position] ^= 0xFF
        with pytest.raises(SnapshotError):
            loadvm(target, bytes(data))
    assert observe(target) == before


def test_trailing_bytes_after_a_snapshot_are_refused(snapshot, target):
    assert_refused(target, snapshot + b"\x00", "checksum")


@given(
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=4,
    )
)
def test_random_byte_flips_are_refused_and_change_nothing(snapshot, flips):
    target = TARGET_FOR_FLIPS
    before = observe(target)
    data = bytearray(snapshot)
    for position, xor in flips:
        data[position % len(data)] ^= xor
    if bytes(data) == snapshot:  # two flips of one byte can cancel out
        return
    with pytest.raises(SnapshotError):
        loadvm(target, bytes(data))
    assert observe(target) == before


def _target_for_flips() -> Machine:
    m = booted()
    run_for(m, 1_234)
    return m


# Built once: Hypothesis does not let a test mix function-scoped fixtures and examples.
TARGET_FOR_FLIPS = _target_for_flips()


def _body_edits() -> list[tuple[str, Callable[[dict[str, Any]], object], str]]:
    def with_cpu(**fields: object) -> Callable[[dict[str, Any]], object]:
        def edit(body: dict[str, Any]) -> object:
            body["cpu"]["fields"].update(fields)
            return body

        return edit

    def setter(path: str, value: object) -> Callable[[dict[str, Any]], object]:
        def edit(body: dict[str, Any]) -> object:
            *parents, last = path.split("/")
            node = body
            for key in parents:
                node = node[key]
            if value is KeyError:
                del node[last]
            else:
                node[last] = value
            return body

        return edit

    def page(index: object, data: object) -> Callable[[dict[str, Any]], object]:
        def edit(body: dict[str, Any]) -> object:
            body["ram"][index] = data
            return body

        return edit

    x_with_x0 = [7] + [0] * 31
    return [
        ("not a map", lambda body: [body], "must be a map"),
        ("an unknown key", setter("extra", 1), "unknown key"),
        ("a missing key", setter("vclock", KeyError), "missing key"),
        ("x0 not zero", with_cpu(x=x_with_x0), "x0"),
        ("a register out of range", with_cpu(pc=1 << 32), "out of range"),
        ("a register of the wrong type", with_cpu(mepc="0"), "expected U32"),
        ("mstatus junk", with_cpu(mstatus=MSTATUS_MIE | 1), "mstatus"),
        ("mie junk", with_cpu(mie=MIE_WRITABLE | 2), "mie"),
        ("mip junk", with_cpu(mip=1 << 16), "mip"),
        ("a misaligned mepc", with_cpu(mepc=0x8000_0002), "mepc"),
        ("a reserved mtvec mode", with_cpu(mtvec=0x8000_0002), "mtvec"),
        ("more nonretired than icount", with_cpu(nonretired=1 << 40), "nonretired"),
        ("an icount not the header's", with_cpu(icount=1), "header"),
        ("a RAM page index past the end", page(16, bytes(PAGE_SIZE)), "page index"),
        ("a negative RAM page index", page(-1, bytes(PAGE_SIZE)), "page index"),
        ("a string RAM page index", page("0", bytes(PAGE_SIZE)), "page index"),
        ("a short RAM page", page(3, b"\x01" * 100), "4096 bytes"),
        ("a RAM page that is not bytes", page(3, [1, 2]), "4096 bytes"),
        ("a ROM page past the end", setter("rom/15", bytes(PAGE_SIZE)), "page index"),
        ("boot image outside RAM", setter("boot_image", [[0x1000, b"x"]]), "not RAM"),
        ("boot image past RAM", setter("boot_image", [[RAM_BASE + RAM_SIZE - 1, b"xy"]]), "RAM"),
        ("a malformed boot image", setter("boot_image", [[RAM_BASE]]), "pair"),
        ("an unknown device", setter("devices/uart1", {}), "unknown key"),
        ("a missing device", setter("devices/uart0", KeyError), "missing key"),
        ("a bad device value", setter("devices/uart0/fields/lcr", 256), "uart0"),
        ("a missing device field", setter("devices/clint/fields/msip", KeyError), "msip"),
        ("a too-new device section", setter("devices/clint/version", 2), "newer"),
        ("a wrong section name", setter("devices/uart0/name", "clint"), "unknown section"),
        ("a bad timer deadline", setter("devices/clint/fields/timer/deadline_ns", -1), "range"),
        ("a bad clock bias", setter("vclock/fields/bias_ns", "0"), "bias_ns"),
        ("a float", with_cpu(mcause=1.5), "mcause"),
    ]


@pytest.mark.parametrize(("what", "edit", "match"), _body_edits(), ids=lambda v: str(v)[:40])
def test_a_hostile_body_with_a_valid_checksum_is_refused_and_changes_nothing(
    snapshot, target, what, edit, match
):
    del what
    header, body = split(snapshot)
    assert_refused(target, reseal(header, edit(body)), match)


def test_a_header_with_an_unknown_key_or_a_wrong_type_is_refused(snapshot, target):
    header, body = split(snapshot)
    assert_refused(target, reseal({**header, "extra": 1}, body), "unknown key")
    assert_refused(target, reseal({**header, "icount_shift": "0"}, body), "icount_shift")
    assert_refused(target, reseal({**header, "config_hash": b"x"}, body), "config_hash")
    no_hash = {k: v for k, v in header.items() if k != "config_hash"}
    assert_refused(target, reseal(no_hash, body), "missing key")


def test_a_msgpack_extension_type_is_refused(snapshot, target):
    header, body = split(snapshot)
    body["boot_image"] = [msgpack.ExtType(1, b"x")]
    assert_refused(target, reseal(header, body), "undecodable")


def test_loadvm_takes_only_bytes(target):
    with pytest.raises(SnapshotError, match="bytes"):
        loadvm(target, "not bytes")  # type: ignore[arg-type]


# -- round trip over random state ---------------------------------------------------------------

u32 = st.integers(0, MASK32)
u64 = st.integers(0, MASK64)


@st.composite
def machine_states(draw: st.DrawFn) -> dict[str, Any]:
    icount = draw(st.integers(0, 1 << 62))
    return {
        "x": [0, *draw(st.lists(u32, min_size=31, max_size=31))],
        "pc": draw(u32),
        "icount": icount,
        "nonretired": draw(st.integers(0, icount)),
        "mstatus": draw(
            st.sampled_from([0, MSTATUS_MIE, MSTATUS_MPIE, MSTATUS_MIE | MSTATUS_MPIE])
        ),
        "mie": draw(u32) & MIE_WRITABLE,
        "mip": draw(u32) & MIE_WRITABLE,
        "mtvec": draw(u32) & ~2,
        "mscratch": draw(u32),
        "mepc": draw(u32) & ~3,
        "mcause": draw(u32),
        "mtval": draw(u32),
        "mcycle_delta": draw(st.integers(-(1 << 63), MASK64)),
        "minstret_delta": draw(st.integers(-(1 << 63), MASK64)),
        "halted": draw(st.booleans()),
        "last_trap_target": draw(st.one_of(st.just(-1), u32)),
        "last_trap_retired": draw(st.one_of(st.just(-1), st.integers(0, 1 << 62))),
        "uart": {
            "ier": draw(st.integers(0, 15)),
            "lcr": draw(st.integers(0, 255)),
            "mcr": draw(st.integers(0, 31)),
            "scr": draw(st.integers(0, 255)),
            "divisor": draw(st.integers(0, 0xFFFF)),
        },
        "clint": {
            "msip": draw(st.integers(0, 1)),
            "mtimecmp": draw(u64),
            "time_delta": draw(u64),
        },
        "deadline": draw(st.one_of(st.none(), st.integers(0, 1 << 62))),
        "bias": draw(st.integers(0, 1 << 62)),
        "pages": draw(
            st.dictionaries(
                st.integers(0, RAM_SIZE // PAGE_SIZE - 1), st.binary(min_size=1, max_size=64)
            )
        ),
        "boot_image": draw(
            st.lists(st.tuples(st.integers(0, RAM_SIZE - 64), st.binary(max_size=64)), max_size=3)
        ),
        "rom": draw(st.binary(max_size=64)),
    }


def apply_state(m: Machine, state: dict[str, Any]) -> None:
    cpu = m.cpu
    cpu.x[:] = state["x"]
    for name in field_names(CPU_VMSTATE) - {"x"}:
        setattr(cpu, name, state[name])
    cpu.update_irq_pending()
    for name, value in state["uart"].items():
        setattr(m.devices["uart0"], name, value)
    clint = m.devices["clint"]
    for name, value in state["clint"].items():
        setattr(clint, name, value)
    if state["deadline"] is None:
        clint.timer.cancel()
    else:
        clint.timer.mod(state["deadline"])
    m.vclock.bias_ns = state["bias"]
    for index, data in state["pages"].items():
        m.bus.write_bytes(RAM_BASE + index * PAGE_SIZE + 17, data)
    m.boot_image[:] = [(RAM_BASE + offset, data) for offset, data in state["boot_image"]]
    m.bus.rom[100 : 100 + len(state["rom"])] = state["rom"]


@given(state=machine_states(), seed=st.one_of(st.none(), st.integers()))
def test_a_snapshot_round_trip_restores_any_machine_state(state, seed):
    original = Machine(config(1))
    apply_state(original, state)
    data = savevm(original)
    loaded = Machine(config(1))
    loadvm(loaded, data, section_order_seed=seed)
    assert_same(original, loaded)
    assert savevm(loaded) == data


@pytest.mark.skipif(DIGEST is None, reason="vm/digest.py is not there")
def test_the_state_digest_of_a_loaded_machine_equals_the_original(snapshot):
    original = booted()
    run_for(original, 5_000)
    loaded = Machine(config())
    loadvm(loaded, snapshot)
    assert DIGEST is not None
    assert DIGEST(loaded) == DIGEST(original)
    finish(original)
    finish(loaded)
    assert DIGEST(loaded) == DIGEST(original)


def test_sections_load_in_reverse_order_to_the_same_machine():
    m = Machine(MachineConfig(ram_size=64 << 10))
    load_program(m, assemble("li t0, 5\n1: addi t0, t0, -1\n bnez t0, 1b\n wfi"))
    m.run(20)
    data = savevm(m)
    digests = set()
    for reverse in (False, True):
        fresh = Machine(MachineConfig(ram_size=64 << 10))
        loadvm(fresh, data, section_order_seed=7, reverse_sections=reverse)
        digests.add(digest(fresh))
    assert digests == {digest(m)}


def test_a_machine_just_after_a_trap_reloads_to_the_same_digest():
    # mcause once held the Cause enum member, which the digest tells apart from the plain
    # int a loaded snapshot holds (found by the fuzzer on the correct machine).
    m = Machine(MachineConfig(ram_size=64 << 10))
    load_program(m, assemble("la t0, 1f\n csrw mtvec, t0\n ecall\n1: wfi"))
    m.run(10)
    assert m.cpu.mcause == 11
    fresh = Machine(MachineConfig(ram_size=64 << 10))
    loadvm(fresh, savevm(m))
    assert digest(fresh) == digest(m)
