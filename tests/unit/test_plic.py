"""The PLIC at 0x0c00_0000: QEMU 7.2's sifive_plic as `virt` builds it for one M-mode hart.

Registers are driven through the bus of a default machine (`vm.Machine()`), interrupt lines
through `Machine.irq_line`, and access sizes and interrupt delivery through guest programs.
Every expected value here was observed on the reference QEMU 7.2.22 (see vm/devices/plic.py
and tests/differential/guests/plic.S).
"""

from __future__ import annotations

import pytest

from vm import Machine, MachineConfig, StopReason
from vm.config import DEFAULT_DEVICES, PLIC
from vm.cpu import GuestTrap
from vm.csr import MIP_MEIP, Cause
from vm.devices.plic import (
    CLAIM_COMPLETE,
    ENABLE_BASE,
    NUM_SOURCES,
    PENDING_BASE,
    THRESHOLD,
    WINDOW_SIZE,
    Plic,
)
from vm.devices.registry import device_class
from vm.vmstate import field_names

from .helpers import MODES, RAM_BASE, load_code, run_asm, run_mode, trapped

BASE = 0x0C00_0000
CONTEXT1_THRESHOLD = 0x20_1000
CONTEXT1_CLAIM = 0x20_1004
CONTEXT1_ENABLE = 0x2080
MEIP_CAUSE = 0x8000_000B


# The PLIC's saved state, as its VMSTATE declares it.
_STATE_FIELDS = sorted(field_names(Plic.VMSTATE))


def machine() -> Machine:
    return Machine()


def plic(m: Machine) -> Plic:
    device = m.devices["plic"]
    assert isinstance(device, Plic)
    return device


def rd(m: Machine, offset: int) -> int:
    return m.bus.read(BASE + offset, 4)


def wr(m: Machine, offset: int, value: int) -> None:
    m.bus.write(BASE + offset, 4, value)


def meip(m: Machine) -> bool:
    return bool(m.cpu.mip & MIP_MEIP)


def prio(m: Machine, source: int, value: int) -> None:
    wr(m, 4 * source, value)


def enable(m: Machine, *sources: int) -> None:
    """Set the enable words to exactly `sources`."""
    words = [0, 0, 0]
    for source in sources:
        words[source >> 5] |= 1 << (source & 31)
    for index, word in enumerate(words):
        wr(m, ENABLE_BASE + 4 * index, word)


def claim(m: Machine) -> int:
    return rd(m, CLAIM_COMPLETE)


def complete(m: Machine, source: int) -> None:
    wr(m, CLAIM_COMPLETE, source)


def pend(m: Machine, *sources: int) -> None:
    """Pulse each source's line (raise, then lower: the pending bit stays)."""
    for source in sources:
        line = m.irq_line(source)
        line.raise_()
        line.lower()


def pending_bits(m: Machine) -> int:
    return sum(rd(m, PENDING_BASE + 4 * i) << (32 * i) for i in range(3))


def ready(m: Machine, *sources: int, priority: int = 1) -> None:
    """Give `sources` a priority, enable exactly them and make them pending."""
    for source in sources:
        prio(m, source, priority)
    enable(m, *sources)
    pend(m, *sources)


def saved(m: Machine) -> dict[str, object]:
    device = plic(m)
    return {name: getattr(device, name) for name in _STATE_FIELDS} | {"mip": m.cpu.mip}


# -- the machine ----------------------------------------------------------------------------


def test_the_default_machine_has_the_plic_at_qemus_address():
    assert PLIC in DEFAULT_DEVICES
    assert (PLIC.kind, PLIC.name, PLIC.base) == ("plic", "plic", 0x0C00_0000)
    assert device_class("plic") is Plic
    region = machine().bus.region_at(BASE)
    assert region is not None and (region.base, region.end) == (BASE, BASE + 0x60_0000)


def test_state_fields_name_the_whole_register_state():
    device = plic(machine())
    for name in _STATE_FIELDS:
        assert hasattr(device, name), name
    assert len(device.priority) == NUM_SOURCES + 1
    assert [len(getattr(device, n)) for n in ("pending", "claimed", "enable")] == [3, 3, 3]


def test_everything_reads_zero_after_power_on():
    m = machine()
    offsets = [4 * s for s in range(98)] + [PENDING_BASE + 4 * i for i in range(4)]
    offsets += [ENABLE_BASE + 4 * i for i in range(4)] + [THRESHOLD, CLAIM_COMPLETE]
    assert [rd(m, o) for o in offsets] == [0] * len(offsets)
    assert not meip(m)


def test_a_machine_without_a_plic_leaves_its_lines_unconnected():
    m = Machine(MachineConfig(devices=tuple(d for d in DEFAULT_DEVICES if d.kind != "plic")))
    m.irq_line(5).raise_()
    assert not meip(m)


# -- priority -------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [1, 2, 31, 32, 63, 64, 95, 96])
def test_each_source_from_1_to_96_has_a_priority_register(source):
    m = machine()
    prio(m, source, 5)
    assert rd(m, 4 * source) == 5
    others = [rd(m, 4 * s) for s in range(98) if s != source]
    assert others == [0] * 97


@pytest.mark.parametrize(
    ("value", "stored"),
    [(0, 0), (1, 1), (7, 7), (8, 0), (9, 1), (15, 7), (0x17, 7), (0x8000_0003, 3), (~0, 7)],
)
def test_a_priority_keeps_its_low_three_bits(value, stored):
    m = machine()
    prio(m, 1, value & 0xFFFF_FFFF)
    assert rd(m, 4) == stored


def test_priority_registers_are_independent():
    m = machine()
    for source in range(1, 97):
        prio(m, source, source)
    assert [rd(m, 4 * s) for s in range(1, 97)] == [s % 8 for s in range(1, 97)]


@pytest.mark.parametrize("offset", [0x0, 0x184, 0x188, 0xFFC])
def test_source_0_and_offsets_past_source_96_read_zero_and_ignore_writes(offset):
    m = machine()
    wr(m, offset, 7)
    assert rd(m, offset) == 0
    assert plic(m).priority == [0] * (NUM_SOURCES + 1)


# -- pending --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [1, 5, 31, 32, 63, 64, 95])
def test_a_raised_line_sets_its_pending_bit(source):
    m = machine()
    m.irq_line(source).raise_()
    assert pending_bits(m) == 1 << source
    assert rd(m, PENDING_BASE + 4 * (source >> 5)) == 1 << (source & 31)


def test_pending_words_are_read_only():
    m = machine()
    for i in range(4):
        wr(m, PENDING_BASE + 4 * i, 0xFFFF_FFFF)
    assert pending_bits(m) == 0
    pend(m, 3)
    wr(m, PENDING_BASE, 0)
    assert pending_bits(m) == 1 << 3


def test_the_word_after_the_pending_bitmap_reads_zero():
    m = machine()
    pend(m, 95)
    assert rd(m, PENDING_BASE + 12) == 0


# -- enable ---------------------------------------------------------------------------------


@pytest.mark.parametrize("word", [0, 1, 2])
def test_enable_words_hold_every_bit_as_written(word):
    m = machine()
    wr(m, ENABLE_BASE + 4 * word, 0xFFFF_FFFF)  # bit 0 of word 0 (source 0) included
    assert rd(m, ENABLE_BASE + 4 * word) == 0xFFFF_FFFF
    wr(m, ENABLE_BASE + 4 * word, 0x1234_5678)
    assert rd(m, ENABLE_BASE + 4 * word) == 0x1234_5678


@pytest.mark.parametrize("offset", [ENABLE_BASE + 12, ENABLE_BASE + 0x7C, CONTEXT1_ENABLE])
def test_enable_offsets_past_the_third_word_and_context_1_read_zero(offset):
    m = machine()
    wr(m, offset, 0xFFFF_FFFF)
    assert rd(m, offset) == 0
    assert plic(m).enable == [0, 0, 0]


# -- threshold ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"), [(0, 0), (1, 1), (7, 7), (8, 0), (9, 1), (15, 7), (0xFFFF_FFFF, 7)]
)
def test_the_threshold_keeps_its_low_three_bits(value, stored):
    m = machine()
    wr(m, THRESHOLD, value)
    assert rd(m, THRESHOLD) == stored


@pytest.mark.parametrize(
    "offset", [CONTEXT1_THRESHOLD, CONTEXT1_CLAIM, THRESHOLD + 8, THRESHOLD + 0xFFC]
)
def test_context_offsets_other_than_threshold_and_claim_read_zero(offset):
    m = machine()
    ready(m, 4)
    before = saved(m)
    wr(m, offset, 5)
    assert rd(m, offset) == 0
    assert saved(m) == before  # a context-1 claim does not claim context 0's source


# -- claim / complete -------------------------------------------------------------------------


def test_claim_with_nothing_pending_returns_0():
    m = machine()
    assert claim(m) == 0
    prio(m, 7, 3)
    enable(m, 7)
    assert claim(m) == 0


def test_claim_returns_the_source_and_marks_it_claimed():
    m = machine()
    ready(m, 9)
    assert claim(m) == 9
    assert pending_bits(m) == 0
    assert plic(m).claimed == [1 << 9, 0, 0]
    assert claim(m) == 0


def test_claim_takes_the_highest_priority_first():
    m = machine()
    for source, priority in [(3, 1), (40, 6), (70, 4), (90, 7)]:
        prio(m, source, priority)
    enable(m, 3, 40, 70, 90)
    pend(m, 3, 40, 70, 90)
    assert [claim(m) for _ in range(5)] == [90, 40, 70, 3, 0]


def test_equal_priorities_go_to_the_lowest_id():
    m = machine()
    ready(m, 95, 33, 10, 64, priority=2)
    assert [claim(m) for _ in range(5)] == [10, 33, 64, 95, 0]


def test_the_threshold_hides_priorities_at_or_below_it():
    m = machine()
    prio(m, 10, 2)
    prio(m, 11, 3)
    enable(m, 10, 11)
    pend(m, 10, 11)
    wr(m, THRESHOLD, 3)
    assert claim(m) == 0
    wr(m, THRESHOLD, 2)
    assert claim(m) == 11
    assert claim(m) == 0
    wr(m, THRESHOLD, 1)
    assert claim(m) == 10


def test_priority_0_and_disabled_sources_are_never_claimed():
    m = machine()
    prio(m, 12, 0)
    prio(m, 13, 5)
    enable(m, 12)
    pend(m, 12, 13)
    assert claim(m) == 0
    assert pending_bits(m) == (1 << 12) | (1 << 13)


def test_a_claimed_source_is_not_offered_again_until_completed():
    m = machine()
    ready(m, 6)
    assert claim(m) == 6
    pend(m, 6)  # pending again while claimed
    assert pending_bits(m) == 1 << 6
    assert claim(m) == 0
    complete(m, 6)
    assert claim(m) == 6


def test_a_lower_priority_source_is_claimed_while_a_higher_one_is_claimed():
    m = machine()
    prio(m, 20, 7)
    prio(m, 21, 1)
    enable(m, 20, 21)
    pend(m, 20)
    assert claim(m) == 20
    pend(m, 20, 21)
    assert claim(m) == 21


def test_completing_a_source_that_is_not_claimed_changes_nothing():
    m = machine()
    ready(m, 10, 11)
    assert claim(m) == 10
    before = saved(m)
    complete(m, 11)
    complete(m, 0)
    assert saved(m) == before
    assert claim(m) == 11


@pytest.mark.parametrize("value", [96, 97, 0x8000_000A, 0xFFFF_FFFF])
def test_a_completion_with_an_id_of_96_or_more_is_ignored(value):
    m = machine()
    ready(m, 10)
    assert claim(m) == 10
    before = saved(m)
    complete(m, value)
    assert saved(m) == before


def test_completing_a_disabled_claimed_source_ends_the_claim_as_in_qemu():
    m = machine()
    ready(m, 10)
    assert claim(m) == 10
    pend(m, 10)
    enable(m)
    complete(m, 10)
    assert plic(m).claimed == [0, 0, 0]
    enable(m, 10)
    assert claim(m) == 10


def test_completing_a_source_with_nothing_pending_offers_nothing():
    m = machine()
    ready(m, 10)
    assert claim(m) == 10
    complete(m, 10)
    assert claim(m) == 0 and not meip(m)


# -- MEIP -----------------------------------------------------------------------------------


def test_meip_follows_a_raised_line_of_an_enabled_source_above_the_threshold():
    m = machine()
    prio(m, 5, 1)
    enable(m, 5)
    assert not meip(m)
    m.irq_line(5).raise_()
    assert meip(m)


def test_meip_stays_low_for_a_disabled_or_priority_0_source():
    m = machine()
    prio(m, 5, 1)
    pend(m, 5)
    assert not meip(m)
    prio(m, 6, 0)
    enable(m, 6)
    pend(m, 6)
    assert not meip(m)


def test_meip_after_priority_writes():
    m = machine()
    enable(m, 5)
    pend(m, 5)
    assert not meip(m)
    prio(m, 5, 1)
    assert meip(m)
    prio(m, 5, 8)  # stores 0
    assert not meip(m)


def test_meip_after_threshold_writes():
    m = machine()
    ready(m, 5, priority=3)
    assert meip(m)
    wr(m, THRESHOLD, 3)
    assert not meip(m)
    wr(m, THRESHOLD, 2)
    assert meip(m)
    wr(m, THRESHOLD, 11)  # stores 3
    assert not meip(m)


def test_meip_is_not_reevaluated_by_enable_writes_as_in_qemu():
    """QEMU's sifive_plic_write returns without sifive_plic_update after an enable write."""
    m = machine()
    prio(m, 11, 2)
    pend(m, 11)
    enable(m, 11)
    assert not meip(m)  # enabled and claimable, but nothing re-evaluated yet
    wr(m, THRESHOLD, 0)
    assert meip(m)
    enable(m)
    assert meip(m)  # disabled, still high
    assert claim(m) == 0  # a claim read re-evaluates, even when it returns 0
    assert not meip(m)
    assert pending_bits(m) == 1 << 11


def test_meip_after_claim_and_complete():
    m = machine()
    ready(m, 5, 6)
    assert meip(m)
    assert claim(m) == 5
    assert meip(m)  # 6 is still claimable
    assert claim(m) == 6
    assert not meip(m)
    pend(m, 5)
    assert not meip(m)  # pending but claimed
    complete(m, 5)
    assert meip(m)
    assert claim(m) == 5
    assert not meip(m)


def test_a_lowered_line_leaves_meip_and_the_pending_bit():
    m = machine()
    prio(m, 5, 1)
    enable(m, 5)
    line = m.irq_line(5)
    line.raise_()
    line.lower()
    assert meip(m) and pending_bits(m) == 1 << 5
    assert claim(m) == 5
    assert not meip(m)


# -- input lines ----------------------------------------------------------------------------


def test_the_plic_stores_the_input_levels_it_has_seen():
    m = machine()
    m.irq_line(1).raise_()
    m.irq_line(40).raise_()
    m.irq_line(95).raise_()
    assert plic(m).input_levels == [1 << 1, 1 << 8, 1 << 31]
    m.irq_line(40).lower()
    assert plic(m).input_levels == [1 << 1, 0, 1 << 31]


def test_a_line_driven_high_again_pends_again_after_a_claim():
    """QEMU sets the pending bit on every call with a high level, not only on an edge."""
    m = machine()
    prio(m, 10, 1)
    enable(m, 10)
    line = m.irq_line(10)
    line.raise_()
    assert claim(m) == 10 and pending_bits(m) == 0
    line.raise_()  # still high
    assert pending_bits(m) == 1 << 10
    complete(m, 10)
    assert meip(m) and claim(m) == 10


def test_a_line_held_high_does_not_pend_again_by_itself():
    m = machine()
    ready(m, 10)
    m.irq_line(10).raise_()
    assert claim(m) == 10
    complete(m, 10)
    assert pending_bits(m) == 0 and claim(m) == 0


@pytest.mark.parametrize("source", [0, 96, 1023, -1])
def test_sources_without_a_line_are_refused(source):
    with pytest.raises(ValueError, match="PLIC source"):
        plic(machine()).set_input(source, True)


# -- offsets, window and access sizes ---------------------------------------------------------


@pytest.mark.parametrize(
    "offset",
    [0x184, 0xFFC, 0x100C, 0x1FFC, 0x200C, 0x3000, 0x1F_FFFC, 0x20_0008, 0x20_1000, 0x5F_FFFC],
)
def test_offsets_without_a_register_read_zero_and_ignore_writes(offset):
    m = machine()
    ready(m, 7, 50)
    wr(m, THRESHOLD, 0)
    before = saved(m)
    assert rd(m, offset) == 0
    wr(m, offset, 0xFFFF_FFFF)
    assert saved(m) == before


@pytest.mark.parametrize("address", [BASE - 4, BASE + WINDOW_SIZE, BASE + 0x7F_FFFC])
def test_the_window_is_six_mib(address):
    m = machine()
    with pytest.raises(GuestTrap) as load:
        m.bus.read(address, 4)
    assert (load.value.cause, load.value.tval) == (Cause.LOAD_ACCESS_FAULT, address)
    with pytest.raises(GuestTrap) as store:
        m.bus.write(address, 4, 1)
    assert (store.value.cause, store.value.tval) == (Cause.STORE_ACCESS_FAULT, address)


@pytest.mark.parametrize("insn", ["lb", "lbu", "lh", "lhu"])
@pytest.mark.parametrize("offset", [4, 6, CLAIM_COMPLETE])
def test_byte_and_half_word_loads_fault(insn, offset):
    ran = run_asm(f"li a1, {BASE + offset}\nli a0, 0xdead\n{insn} a0, 0(a1)\nwfi\n")
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mtval) == (Cause.LOAD_ACCESS_FAULT, BASE + offset)
    assert ran.x("a0") == 0xDEAD


@pytest.mark.parametrize("insn", ["sb", "sh"])
def test_byte_and_half_word_stores_fault_and_store_nothing(insn):
    ran = run_asm(f"li a1, {BASE + 4}\nli a2, 5\n{insn} a2, 0(a1)\nwfi\n")
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mtval) == (Cause.STORE_ACCESS_FAULT, BASE + 4)
    assert rd(ran.m, 4) == 0


@pytest.mark.parametrize(("offset", "value"), [(5, 0x0600_0000), (6, 0x0006_0000)])
def test_a_misaligned_word_load_reads_the_two_aligned_words_around_it(offset, value):
    code = f"""
        li a1, {BASE}
        li t0, 5
        sw t0, 4(a1)
        li t0, 6
        sw t0, 8(a1)
        lw a0, {offset}(a1)
        wfi
    """
    ran = run_asm(code)
    assert ran.reason is StopReason.WFI_IDLE and ran.x("a0") == value


def test_a_misaligned_load_across_threshold_and_claim_claims():
    m = machine()
    ready(m, 9, priority=4)
    wr(m, THRESHOLD, 3)
    value = m.bus.read(BASE + THRESHOLD + 2, 4)
    assert value == (3 >> 16) | (9 << 16)
    assert plic(m).claimed == [1 << 9, 0, 0]


def test_a_misaligned_word_store_faults_on_its_first_byte():
    ran = run_asm(f"li a1, {BASE + 5}\nli a2, 0x01020304\nsw a2, 0(a1)\nwfi\n")
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mtval) == (Cause.STORE_ACCESS_FAULT, BASE + 5)
    assert plic(ran.m).priority == [0] * (NUM_SOURCES + 1)


# -- reset ----------------------------------------------------------------------------------


def test_reset_clears_every_register_and_lowers_meip_but_keeps_the_input_levels():
    m = machine()
    ready(m, 11, 12, priority=5)
    prio(m, 95, 3)
    m.irq_line(40).raise_()
    assert claim(m) == 11
    wr(m, THRESHOLD, 2)
    assert meip(m)
    plic(m).reset()
    device = plic(m)
    assert device.priority == [0] * (NUM_SOURCES + 1)
    assert (device.pending, device.claimed, device.enable) == ([0] * 3, [0] * 3, [0] * 3)
    assert device.threshold == 0 and not meip(m)
    assert device.input_levels == [0, 1 << 8, 0]  # the wires' levels are not the PLIC's


def test_reset_keeps_source_96s_priority_as_qemu_does():
    """QEMU's reset clears the 96 entries of its priority array; source 96's register is
    the word just past it, so it survives (observed on 7.2.22)."""
    m = machine()
    prio(m, 96, 5)
    prio(m, 95, 4)
    plic(m).reset()
    assert (rd(m, 4 * 95), rd(m, 4 * 96)) == (0, 5)


def test_a_guest_reset_resets_the_plic():
    code = f"""
        li a1, {BASE}
        li t0, 3
        sw t0, 44(a1)
        li t0, 0x100000
        li t1, 0x7777
        sw t1, 0(t0)
    """
    m = load_code(code)
    ready(m, 7)
    result = m.run(100)
    assert result.reason is StopReason.FINISHER_RESET
    assert claim(m) == 0 and rd(m, 44) == 0 and not meip(m)


# -- interrupt delivery ---------------------------------------------------------------------

# The handler logs (mcause, mepc - RAM_BASE, claimed id, MEIP after the claim, MEIP after the
# completion, a second claim) to LOG and returns; the main program spins until s1 != 0.
LOG = RAM_BASE + 0x8000
GUEST = f"""
    .equ PLIC, {BASE}
    la      t0, handler
    csrw    mtvec, t0
    li      s2, {LOG}
    li      t0, PLIC
    li      t1, 1
    sw      t1, 20(t0)              # source 5: priority 1
    li      t1, 1 << 5
    li      t2, PLIC + 0x2000
    sw      t1, 0(t2)               # enable source 5
    li      t1, 0x800
    csrw    mie, t1                 # MEIE
    csrsi   mstatus, 8              # MIE
spin:
    beqz    s1, spin
    csrw    mie, zero
    wfi
handler:
    li      t0, PLIC + 0x200004
    csrr    t1, mcause
    sw      t1, 0(s2)
    csrr    t1, mepc
    li      t2, {RAM_BASE}
    sub     t1, t1, t2
    sw      t1, 4(s2)
    lw      t1, 0(t0)               # claim
    sw      t1, 8(s2)
    csrr    t2, mip
    srli    t2, t2, 11              # MEIP
    andi    t2, t2, 1
    sw      t2, 12(s2)
    sw      t1, 0(t0)               # complete
    csrr    t2, mip
    srli    t2, t2, 11
    andi    t2, t2, 1
    sw      t2, 16(s2)
    lw      t2, 0(t0)               # nothing left
    sw      t2, 20(s2)
    addi    s2, s2, 24
    addi    s1, s1, 1
    mret
"""


def trap_log(m: Machine, entries: int) -> list[tuple[int, ...]]:
    words = [m.bus.read(LOG + 4 * i, 4) for i in range(6 * entries)]
    return [tuple(words[i : i + 6]) for i in range(0, len(words), 6)]


@pytest.mark.parametrize("mode", MODES)
def test_a_raised_line_interrupts_the_guest_which_claims_and_completes_it(mode):
    m = load_code(GUEST, handler=False)
    result = run_mode(m, 200, mode)
    assert result.reason is StopReason.BUDGET and m.cpu.mcause == 0
    spin_pc = m.cpu.pc - RAM_BASE
    icount = m.cpu.icount
    m.irq_line(5).raise_()
    assert meip(m)
    result = run_mode(m, 200, mode)
    assert result.reason is StopReason.WFI_IDLE
    # Taken before the next instruction: mepc is where the run stopped.
    assert trap_log(m, 1) == [(MEIP_CAUSE, spin_pc, 5, 0, 0, 0)]
    assert m.bus.read(LOG + 24, 4) == 0  # exactly one interrupt
    assert m.cpu.icount > icount and not meip(m) and pending_bits(m) == 0
    assert plic(m).claimed == [0, 0, 0]


def test_a_line_raised_again_after_completion_interrupts_again():
    two = GUEST.replace("beqz    s1, spin", "slti    t3, s1, 2\n    bnez    t3, spin")
    m = load_code(two, handler=False)
    m.run(100)
    m.irq_line(5).raise_()
    m.run(100)
    assert m.cpu.x[9] == 1  # s1: one interrupt so far, still spinning
    m.irq_line(5).raise_()  # the line never went low: QEMU pends again all the same
    assert m.run(200).reason is StopReason.WFI_IDLE
    log = trap_log(m, 2)
    assert [(cause, claimed) for cause, _, claimed, *_ in log] == [(MEIP_CAUSE, 5)] * 2


def test_enabling_a_pending_source_interrupts_only_once_meip_is_reevaluated():
    """The QEMU quirk as a guest sees it: the interrupt comes at the threshold write that
    follows the enable write, not at the enable write."""
    code = f"""
        .equ PLIC, {BASE}
        la      t0, handler
        csrw    mtvec, t0
        la      a2, after_threshold
        li      t0, 0x800
        csrw    mie, t0
        csrsi   mstatus, 8
        li      a1, PLIC
        li      t0, 1
        sw      t0, 20(a1)          # source 5: priority 1 (not enabled: MEIP stays low)
        li      t0, 1 << 5
        li      t1, PLIC + 0x2000
        sw      t0, 0(t1)           # enable: MEIP is not re-evaluated
        nop
        nop
        li      t1, PLIC + 0x200000
        sw      zero, 0(t1)         # a threshold write re-evaluates: MEIP rises
    after_threshold:
        nop
        wfi
    handler:
        csrr    a0, mepc
        csrr    a3, mcause
        csrw    mie, zero           # MEIP is still high: halt for good
        wfi
    """
    m = load_code(code, handler=False)
    m.irq_line(5).raise_()  # pending before the guest starts
    assert m.run(100).reason is StopReason.WFI_IDLE
    assert m.cpu.x[13] == MEIP_CAUSE  # a3
    assert m.cpu.x[10] == m.cpu.x[12]  # a0 (mepc) == a2 (after_threshold)
