"""Conditional branches, JAL and JALR: conditions, targets, links and misaligned targets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import StopReason
from vm.asm import encode
from vm.csr import Cause

from .helpers import (
    INT_MAX,
    INT_MIN,
    MASK32,
    MODES,
    NOP,
    RAM_BASE,
    WFI,
    load_code,
    run_asm,
    run_to_wfi,
    s32,
    trapped,
)

A0, A1, A2 = 10, 11, 12
BRANCHES = ["beq", "bne", "blt", "bge", "bltu", "bgeu"]
VALUES = [0, 1, MASK32, INT_MIN, INT_MAX, 0xFFFF_FFFE, 2]


def taken(name: str, a: int, b: int) -> bool:
    return {
        "beq": a == b,
        "bne": a != b,
        "blt": s32(a) < s32(b),
        "bge": s32(a) >= s32(b),
        "bltu": a < b,
        "bgeu": a >= b,
    }[name]


def branch_program(name: str, offset: int = 12) -> list[int]:
    """Branch at RAM_BASE; a0 = 1 on the fall-through path, a0 = 2 at the target."""
    assert offset >= 12 and offset % 4 == 0
    words = [encode(name, rs1=A1, rs2=A2, imm=offset), encode("addi", rd=A0, imm=1), WFI]
    words += [NOP] * (offset // 4 - 3)
    words += [encode("addi", rd=A0, imm=2), WFI]
    return words


@pytest.mark.parametrize("name", BRANCHES)
def test_branch_is_taken_exactly_when_its_condition_holds(name):
    for mode in MODES:
        for a, b in itertools.product(VALUES, repeat=2):
            ran = run_asm(branch_program(name), regs={A1: a, A2: b}, mode=mode)
            assert ran.reason is StopReason.WFI_IDLE
            expected = 2 if taken(name, a, b) else 1
            assert ran.x(A0) == expected, (name, hex(a), hex(b))
            assert ran.cpu.icount == 3


@pytest.mark.parametrize(
    ("name", "a", "b", "expected"),
    [
        ("blt", MASK32, 0, True),  # -1 < 0 signed
        ("bltu", MASK32, 0, False),  # but not unsigned
        ("bge", INT_MIN, INT_MAX, False),
        ("bgeu", INT_MIN, INT_MAX, True),
        ("bge", 5, 5, True),
        ("blt", 5, 5, False),
        ("bgeu", 0, 0, True),
        ("beq", INT_MIN, INT_MIN, True),
        ("bne", 0, MASK32, True),
    ],
)
def test_branch_compares_signed_or_unsigned_as_named(name, a, b, expected):
    ran = run_asm(branch_program(name), regs={A1: a, A2: b})
    assert (ran.x(A0) == 2) is expected


@pytest.mark.parametrize("name", BRANCHES)
def test_branch_comparing_a_register_with_itself(name):
    ran = run_asm(
        [
            encode(name, rs1=A1, rs2=A1, imm=12),
            encode("addi", rd=A0, imm=1),
            WFI,
            encode("addi", rd=A0, imm=2),
            WFI,
        ],
        regs={A1: INT_MIN},
    )
    assert ran.x(A0) == (2 if name in ("beq", "bge", "bgeu") else 1)


@given(st.sampled_from(BRANCHES), st.integers(0, MASK32), st.integers(0, MASK32))
def test_branch_conditions_match_the_model(name, a, b):
    ran = run_asm(branch_program(name), regs={A1: a, A2: b})
    assert (ran.x(A0) == 2) is taken(name, a, b)


def test_the_longest_forward_branch_reaches_4094_bytes_ahead():
    # Offset 4092 (4094 is not word aligned and would trap); the encoding range is checked
    # in the table tests.
    words = (
        [encode("beq", imm=4092)] + [WFI] * (4092 // 4 - 1) + [encode("addi", rd=A0, imm=7), WFI]
    )
    ran = run_to_wfi(words)
    assert ran.x(A0) == 7 and ran.cpu.pc == RAM_BASE + 4100


def test_the_longest_backward_branch_reaches_4096_bytes_back():
    words = [encode("jal", imm=4100)]  # jump over the landing zone to the branch
    words += [encode("addi", rd=A0, imm=9), WFI]
    words += [WFI] * (4096 // 4 - 2)
    words += [encode("beq", imm=-4096)]
    ran = run_to_wfi(words)
    assert ran.x(A0) == 9 and ran.cpu.pc == RAM_BASE + 12
    assert ran.cpu.icount == 4


@pytest.mark.parametrize("mode", MODES)
def test_a_backward_branch_loop_runs_the_right_number_of_times(mode):
    ran = run_to_wfi(
        """
        li   a0, 0
        li   a1, 1000
    1:  addi a0, a0, 3
        addi a1, a1, -1
        bnez a1, 1b
        wfi
    """,
        mode=mode,
    )
    assert ran.x("a0") == 3000
    assert ran.cpu.icount == 2 + 3 * 1000 + 1


@pytest.mark.parametrize("name", BRANCHES)
@pytest.mark.parametrize("offset", [2, 6, -2, -6, 4094, -4094])
@pytest.mark.parametrize("mode", MODES)
def test_a_taken_branch_to_a_misaligned_target_traps_and_counts(name, offset, mode):
    a, b = (1, 1) if name in ("beq", "bge", "bgeu") else (0, 1)
    words = [NOP, encode(name, rs1=A1, rs2=A2, imm=offset), WFI]
    ran = run_asm(words, regs={A1: a, A2: b}, mode=mode)
    assert trapped(ran)
    c = ran.cpu
    target = (RAM_BASE + 4 + offset) & MASK32
    assert (c.mcause, c.mepc, c.mtval) == (Cause.INSN_ADDR_MISALIGNED, RAM_BASE + 4, target)
    assert c.icount == 3  # nop, the branch (counted although it trapped), the handler's wfi
    assert c.retired == 2


@pytest.mark.parametrize("name", BRANCHES)
def test_a_not_taken_branch_to_a_misaligned_target_does_not_trap(name):
    a, b = (0, 1) if name in ("beq", "bge", "bgeu") else (1, 1)
    ran = run_asm([encode(name, rs1=A1, rs2=A2, imm=6), WFI], regs={A1: a, A2: b})
    assert ran.reason is StopReason.WFI_IDLE and ran.cpu.pc == RAM_BASE + 8
    assert ran.cpu.mcause == 0


# -- JAL ---------------------------------------------------------------------------------------


def test_jal_links_the_next_pc_and_jumps():
    ran = run_to_wfi([encode("jal", rd=1, imm=12), WFI, WFI, encode("addi", rd=A0, imm=5), WFI])
    assert ran.x("ra") == RAM_BASE + 4
    assert ran.x(A0) == 5 and ran.cpu.pc == RAM_BASE + 20


def test_jal_with_rd_x0_does_not_link():
    ran = run_to_wfi([encode("jal", rd=0, imm=8), WFI, WFI])
    assert ran.cpu.x[0] == 0 and ran.cpu.pc == RAM_BASE + 12


def test_jal_backwards():
    ran = run_to_wfi(
        [encode("jal", imm=12), encode("addi", rd=A0, imm=4), WFI, encode("jal", rd=5, imm=-8)]
    )
    assert ran.x(A0) == 4 and ran.x("t0") == RAM_BASE + 16


def test_a_jump_to_itself_spins_until_the_budget():
    ran = run_asm([encode("jal", imm=0)], budget=1234)
    assert ran.reason is StopReason.BUDGET and ran.result.executed == 1234
    assert ran.cpu.pc == RAM_BASE


@pytest.mark.parametrize("offset", [2, -2, 6, 0xFFFFE])
@pytest.mark.parametrize("mode", MODES)
def test_jal_to_a_misaligned_target_traps_without_writing_rd(offset, mode):
    ran = run_asm([NOP, encode("jal", rd=1, imm=offset), WFI], regs={"ra": 0x55}, mode=mode)
    assert trapped(ran)
    c = ran.cpu
    target = (RAM_BASE + 4 + offset) & MASK32
    assert (c.mcause, c.mepc, c.mtval) == (Cause.INSN_ADDR_MISALIGNED, RAM_BASE + 4, target)
    assert c.x[1] == 0x55
    assert c.icount == 3 and c.retired == 2


# -- JALR --------------------------------------------------------------------------------------


def test_jalr_jumps_to_rs1_plus_offset_and_links():
    ran = run_to_wfi(
        [encode("jalr", rd=1, rs1=A1, imm=-4), WFI, WFI, encode("addi", rd=A0, imm=3), WFI],
        regs={A1: RAM_BASE + 16},
    )
    assert ran.x(A0) == 3 and ran.x("ra") == RAM_BASE + 4


@pytest.mark.parametrize("mode", MODES)
def test_jalr_clears_bit_zero_of_the_target(mode):
    ran = run_to_wfi(
        [encode("jalr", rd=0, rs1=A1, imm=1), WFI, WFI, encode("addi", rd=A0, imm=3), WFI],
        regs={A1: RAM_BASE + 12},
        mode=mode,
    )
    assert ran.x(A0) == 3
    assert ran.cpu.mcause == 0


@pytest.mark.parametrize("mode", MODES)
def test_jalr_with_rd_equal_to_rs1_jumps_to_the_old_value(mode):
    ran = run_to_wfi(
        [encode("jalr", rd=A1, rs1=A1, imm=4), WFI, encode("addi", rd=A0, imm=6), WFI],
        regs={A1: RAM_BASE + 4},
        mode=mode,
    )
    assert ran.x(A0) == 6
    assert ran.x(A1) == RAM_BASE + 4


def test_jalr_with_x0_base_uses_the_immediate_as_the_address():
    # The target is address 0x7F0 (unmapped): an instruction access fault there.
    ran = run_asm([encode("jalr", rd=1, rs1=0, imm=0x7F0)])
    assert trapped(ran)
    assert ran.x("ra") == RAM_BASE + 4
    assert (ran.cpu.mcause, ran.cpu.mepc, ran.cpu.mtval) == (Cause.INSN_ACCESS_FAULT, 0x7F0, 0x7F0)


@pytest.mark.parametrize(
    ("base", "imm"),
    [(RAM_BASE + 2, 0), (RAM_BASE, 2), (RAM_BASE + 3, 0), (RAM_BASE + 1, 1), (RAM_BASE + 8, -6)],
)
@pytest.mark.parametrize("mode", MODES)
def test_jalr_to_a_target_with_bit_one_set_traps_with_the_target_in_mtval(base, imm, mode):
    ran = run_asm(
        [NOP, encode("jalr", rd=1, rs1=A1, imm=imm), WFI], regs={A1: base, "ra": 0x77}, mode=mode
    )
    assert trapped(ran)
    c = ran.cpu
    target = (base + imm) & ~1 & MASK32
    assert (c.mcause, c.mepc, c.mtval) == (Cause.INSN_ADDR_MISALIGNED, RAM_BASE + 4, target)
    assert c.x[1] == 0x77  # rd is not written
    assert c.icount == 3 and c.retired == 2


@pytest.mark.parametrize("mode", MODES)
def test_call_and_ret_round_trip_through_a_subroutine(mode):
    ran = run_to_wfi(
        """
        li   a0, 5
        call double
        call double
        wfi
    double:
        add  a0, a0, a0
        ret
    """,
        mode=mode,
    )
    assert ran.x("a0") == 20
    assert ran.x("ra") == RAM_BASE + 20  # after the second call (li + auipc/jalr + auipc/jalr)


@pytest.mark.parametrize("mode", MODES)
def test_a_computed_jump_table_dispatches_on_a_register(mode):
    ran = run_to_wfi(
        """
        li   a1, 2
        la   t0, table
        slli a1, a1, 2
        add  t0, t0, a1
        jr   t0
    table:
        j    case0
        j    case1
        j    case2
    case0: li a0, 100
        wfi
    case1: li a0, 101
        wfi
    case2: li a0, 102
        wfi
    """,
        mode=mode,
    )
    assert ran.x("a0") == 102


def test_code_reached_by_falling_off_the_end_of_ram_faults_on_fetch():
    ram_end = RAM_BASE + 0x4000
    m = load_code([NOP, NOP], base=ram_end - 8, ram_size=0x4000, handler=False)
    m.bus.write_bytes(RAM_BASE, WFI.to_bytes(4, "little"))
    m.cpu.mtvec = RAM_BASE
    result = m.run(10)
    assert result.reason is StopReason.WFI_IDLE and m.cpu.pc == RAM_BASE + 4
    assert m.cpu.mcause == Cause.INSN_ACCESS_FAULT
    assert m.cpu.mepc == m.cpu.mtval == ram_end
    assert m.cpu.icount == 3  # two nops and the handler's wfi; the fetch fault is not counted
