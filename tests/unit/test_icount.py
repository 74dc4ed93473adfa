"""The instruction count: what icount counts (pinned, as QEMU's -icount), minstret's
retirement rule, exact budgets, split runs, virtual time seen by MMIO, and self-modifying
code."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import Machine, StopReason
from vm.asm import assemble_program, encode

from .helpers import (
    CLINT_MTIME,
    HANDLER,
    MODES,
    NOP,
    RAM_BASE,
    WFI,
    load_code,
    run_asm,
    run_mode,
    run_to_wfi,
    state,
)

A0, A1 = 10, 11


def stop_at_handler(m: Machine, budget: int = 1000, mode: str = "interpreted"):
    m.set_breakpoints({HANDLER})
    result = run_mode(m, budget, mode)
    assert result.reason is StopReason.BREAKPOINT and m.cpu.pc == HANDLER, result
    return result


# -- what counts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "regs", "counted"),
    [
        (encode("ecall"), {}, True),
        (encode("ebreak"), {}, True),
        (0xFFFF_FFFF, {}, True),  # illegal at decode
        (0x0000_0000, {}, True),
        (0x0200_1013, {}, True),  # slli with shamt[5]: illegal at decode
        (encode("jal", rd=1, imm=6), {}, True),  # misaligned target
        (encode("jalr", rd=1, rs1=A0), {A0: RAM_BASE + 2}, True),
        (encode("beq", imm=2), {}, True),
        (encode("lw", rd=A1, rs1=A0), {A0: 0x40}, False),  # load access fault
        (encode("sw", rs1=A0, rs2=A1), {A0: 0x40}, False),  # store access fault
        (encode("sb", rs1=A0, rs2=A1), {A0: 0x0010_0000}, False),  # finisher: byte store faults
        (encode("lw", rd=A1, rs1=A0, imm=-2), {A0: RAM_BASE + 0x10000}, False),  # straddles RAM end
        (encode("csrrs", rd=A1, csr=0x7C0), {}, False),  # missing CSR
        (encode("csrrw", rd=A1, rs1=A0, csr=0xC00), {}, False),  # write to read-only
        (encode("csrrs", rd=A1, csr=0xC01), {}, False),  # time is not implemented
        (encode("jalr", rs1=A0), {A0: 0x40}, True),  # the jump counts; the fetch fault at 0x40 not
    ],
    ids=[
        "ecall",
        "ebreak",
        "illegal-ones",
        "illegal-zero",
        "illegal-slli",
        "jal-misaligned",
        "jalr-misaligned",
        "branch-misaligned",
        "load-fault",
        "store-fault",
        "byte-finisher",
        "load-straddle",
        "missing-csr",
        "read-only-csr",
        "time-csr",
        "fetch-fault",
    ],
)
def test_which_faulting_instructions_icount_counts(word, regs, counted):
    for mode in MODES:
        m = load_code([NOP, NOP, word], regs=regs)
        stop_at_handler(m, mode=mode)
        assert m.cpu.icount == 2 + counted
        retired = 2 + (word == encode("jalr", rs1=A0))  # only the good jump retires
        assert m.cpu.retired == retired
        assert m.cpu.minstret64() == retired
        assert m.cpu.mcycle64() == m.cpu.icount


@pytest.mark.parametrize(
    "word",
    [
        encode("fence", imm=0xFF),
        encode("fence.i"),
        encode("addi"),
        encode("csrrs", rd=A0, csr=0x300),
    ],
    ids=["fence", "fence.i", "nop", "csr"],
)
def test_ordinary_instructions_count_and_retire_once(word):
    ran = run_to_wfi([word, word, WFI])
    assert ran.cpu.icount == ran.cpu.retired == 3
    assert ran.result.executed == 3


def test_mret_and_wfi_count_and_retire():
    m = load_code([encode("mret")])
    m.bus.write_bytes(RAM_BASE + 0x40, WFI.to_bytes(4, "little"))
    m.cpu.mepc = RAM_BASE + 0x40
    result = m.run(10)
    assert result.reason is StopReason.WFI_IDLE
    assert m.cpu.icount == m.cpu.retired == result.executed == 2


def test_an_instruction_fetch_fault_executes_and_counts_nothing():
    m = load_code([NOP], handler=True)
    m.cpu.pc = 0x0002_0000  # unmapped
    result = stop_at_handler(m)
    assert result.executed == 0 and m.cpu.icount == 0
    assert (m.cpu.mepc, m.cpu.mcause) == (0x0002_0000, 1)


def test_a_trap_or_interrupt_entry_itself_costs_nothing():
    m = load_code([NOP])
    m.cpu.mie = 0x80
    m.cpu.mstatus = 0x8
    m.cpu.update_irq_pending()
    result = stop_at_handler(m)
    assert result.executed == 0 and m.cpu.icount == 0 and m.cpu.mcause == 0x8000_0007


# -- a program that exercises everything, for budget tests ---------------------------------------

BIG = f"""
_start:
    la   t0, handler
    csrw mtvec, t0
    li   s0, 0x10000000
    li   s1, 0x0200bff8
    la   s2, buf
    li   a0, 0
    li   a1, 23
loop:
    add  a0, a0, a1
    sw   a0, 0(s2)
    lw   a2, 0(s2)
    sh   a2, 6(s2)           # misaligned halfword store
    lw   a3, 5(s2)           # misaligned word load
    addi a1, a1, -1
    andi a4, a1, 7
    bnez a4, 1f
    addi a5, a1, 'A'
    sb   a5, 0(s0)           # UART
    lw   a6, 0(s1)           # mtime
    csrr a7, minstret
    add  s3, s3, a6
    add  s3, s3, a7
    csrr a7, mcycle
    add  s3, s3, a7
1:  bnez a1, loop
    ecall
    .word 0xffffffff
    lw   t2, 0(zero)
    .word {encode("jal", rd=1, imm=6):#x}
    csrr t2, 0x7c0
    call func
    call func
    la   t3, patch
    li   t4, {encode("addi", rd=20, rs1=20, imm=100):#x}
    sw   t4, 0(t3)
patch:
    addi s4, s4, 1
    call func
    li   t0, 0x100000
    li   t1, 0x5555
    sw   t1, 0(t0)
    j    .
handler:
    addi s5, s5, 1
    csrr t6, mepc
    addi t6, t6, 4
    csrw mepc, t6
    mret
func:
    addi s6, s6, 3
    la   t5, patch
    lw   t5, 0(t5)
    add  s7, s7, t5
    ret
    .align 2
buf: .word 0, 0, 0
"""


@functools.cache
def big_image() -> bytes:
    return assemble_program(BIG).image


def big_machine(shift: int = 0) -> Machine:
    return load_code(big_image(), handler=False, shift=shift)


@functools.cache
def big_total() -> int:
    m = big_machine()
    result = m.run(1_000_000)
    assert result.reason is StopReason.FINISHER_PASS
    return result.executed


def test_the_big_program_passes_and_its_traps_were_taken():
    m = big_machine()
    result = m.run(100_000)
    assert result.reason is StopReason.FINISHER_PASS
    assert m.cpu.x[21] == 5  # s5: ecall, illegal, load fault, misaligned jal, missing CSR
    assert m.cpu.x[20] == 100  # s4: the patched instruction ran
    assert m.console_output() == b"QIA"  # 'A' + a1 whenever a1 % 8 == 0
    assert result.executed == m.cpu.icount == big_total()
    assert m.cpu.retired == big_total() - 3  # ecall, illegal and the misaligned jal do not retire


@pytest.mark.parametrize("mode", MODES)
def test_run_executes_exactly_the_budget_for_every_budget(mode):
    total = big_total()
    budgets = [*range(0, 90), *range(90, total + 3, 7), total - 1, total, total + 1]
    for budget in budgets:
        m = big_machine()
        result = run_mode(m, budget, mode)
        if budget < total:
            assert result.reason is StopReason.BUDGET, budget
            assert result.executed == budget == m.cpu.icount
        else:
            assert result.reason is StopReason.FINISHER_PASS, budget
            assert result.executed == total


def test_every_execution_mode_agrees_at_every_budget():
    total = big_total()
    for budget in range(0, total + 1, 3):
        states = []
        for mode in MODES:
            m = big_machine(shift=3)
            run_mode(m, budget, mode)
            states.append(state(m))
        assert states[0] == states[1] == states[2], budget


@given(
    st.lists(st.tuples(st.integers(0, 60), st.sampled_from(MODES)), min_size=1, max_size=12),
    st.integers(0, 10),
)
def test_a_run_split_into_pieces_in_any_modes_equals_one_run(pieces, shift):
    whole = big_machine(shift)
    whole.run(sum(piece for piece, _ in pieces))
    split = big_machine(shift)
    for piece, mode in pieces:
        if run_mode(split, piece, mode).reason is not StopReason.BUDGET:
            break  # the finisher stopped it, as it stopped the whole run
    assert state(split) == state(whole)


@given(st.integers(0, 700), st.integers(0, 700), st.sampled_from(MODES))
def test_run_a_then_run_b_equals_run_a_plus_b(a, b, mode):
    whole = big_machine()
    one = run_mode(whole, a + b, mode)
    split = big_machine()
    first = run_mode(split, a, mode)
    second = run_mode(split, b, mode) if first.reason is StopReason.BUDGET else first
    assert state(split) == state(whole)
    if first.reason is StopReason.BUDGET:
        assert first.executed + second.executed == one.executed


def test_budget_zero_executes_nothing():
    m = big_machine()
    result = m.run(0)
    assert result.reason is StopReason.BUDGET and result.executed == 0
    assert m.cpu.pc == RAM_BASE and m.cpu.icount == 0


def test_a_negative_budget_is_rejected():
    with pytest.raises(ValueError):
        big_machine().run(-1)


def test_step_executes_one_instruction_at_a_time():
    m = big_machine()
    reference = big_machine()
    for n in range(1, 120):
        result = m.step()
        assert result.executed == 1 and result.reason is StopReason.BUDGET
        reference.run(1)
        assert state(m) == state(reference)
        assert m.cpu.icount == n


# -- virtual time at an MMIO access --------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "shift"),
    [(297, 0), (97, 0), (0, 0), (22, 7), (23, 7), (0, 7), (5, 10), (47, 2), (30, 5)],
)
def test_a_load_of_mtime_sees_the_icount_including_the_load(prefix, shift):
    # prefix nops, `li t0, mtime` (lui + addi), `lw a0, 0(t0)`: the load is instruction
    # prefix + 3, and mtime = (icount << shift) // 100 with that icount.
    words = [NOP] * prefix + [
        encode("lui", rd=5, imm=0x0200_C000),
        encode("addi", rd=5, rs1=5, imm=-8),
        encode("lw", rd=A0, rs1=5),
        encode("lw", rd=A1, rs1=5, imm=4),
        WFI,
    ]
    for mode in MODES:
        ran = run_asm(words, shift=shift, mode=mode)
        icount = prefix + 3
        assert ran.x(A0) == (icount << shift) // 100
        assert ran.x(A1) == ((icount + 1) << shift) // 100 >> 32


@pytest.mark.parametrize("mode", MODES)
def test_mtime_reads_distinguish_the_load_from_the_instruction_before_it(mode):
    # At shift 0, the 300th instruction is the first to see mtime == 3.
    words = [NOP] * 296 + [
        encode("lui", rd=5, imm=0x0200_C000),
        encode("addi", rd=5, rs1=5, imm=-8),
        encode("lw", rd=A0, rs1=5),  # instruction 299
        encode("lw", rd=A1, rs1=5),  # instruction 300
        WFI,
    ]
    ran = run_to_wfi(words, mode=mode)
    assert (ran.x(A0), ran.x(A1)) == (2, 3)
    assert CLINT_MTIME == 0x0200_BFF8


@pytest.mark.parametrize("mode", MODES)
def test_mtime_in_a_loop_tracks_the_icount_at_shift_seven(mode):
    ran = run_to_wfi(
        """
        li   t0, 0x0200bff8
        li   t1, 50
        li   s0, 0
    1:  lw   a0, 0(t0)
        csrr a1, mcycle         # icount before this csrr = icount of the lw
        slli a1, a1, 7
        li   a2, 100
        divu a1, a1, a2
        sub  a3, a0, a1
        or   s0, s0, a3         # stays 0 while every lw saw (icount << 7) // 100
        addi t1, t1, -1
        bnez t1, 1b
        wfi
    """,
        shift=7,
        mode=mode,
    )
    assert ran.x("s0") == 0
    assert ran.x("a0") > 0


# -- self-modifying code ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_store_to_the_next_instruction_in_the_same_block_changes_what_runs(mode):
    src = f"""
        la   t0, next
        li   t1, {encode("addi", rd=A0, imm=42):#x}
        sw   t1, 0(t0)
    next:
        addi a0, zero, 1
        wfi
    """
    m = load_code(src)
    run_mode(
        m, 2, mode
    )  # translate the region once (the page becomes a code page), stop before the sw
    result = run_mode(m, 100, mode)
    assert result.reason is StopReason.WFI_IDLE
    assert m.cpu.x[A0] == 42


@pytest.mark.parametrize("mode", MODES)
def test_a_store_over_an_already_executed_instruction_takes_effect_next_time(mode):
    ran = run_to_wfi(
        f"""
        call f
        mv   s0, a0
        la   t0, f
        li   t1, {encode("addi", rd=A0, imm=100):#x}
        sw   t1, 0(t0)
        call f
        wfi
    f:  addi a0, zero, 1
        ret
    """,
        mode=mode,
    )
    assert ran.x("s0") == 1 and ran.x("a0") == 100


@pytest.mark.parametrize("mode", MODES)
def test_a_loop_that_rewrites_its_own_immediate_each_iteration(mode):
    ran = run_to_wfi(
        """
        li   s0, 5
        li   a0, 0
        la   t0, target
        li   t2, 0x00100000      # +1 in the I-type immediate field
    loop:
    target:
        addi a0, a0, 1
        lw   t1, 0(t0)
        add  t1, t1, t2
        sw   t1, 0(t0)
        addi s0, s0, -1
        bnez s0, loop
        wfi
    """,
        mode=mode,
    )
    assert ran.x("a0") == 1 + 2 + 3 + 4 + 5


@pytest.mark.parametrize("mode", MODES)
def test_a_partial_store_patching_an_instruction_in_a_later_block(mode):
    ran = run_to_wfi(
        f"""
        la   t0, later
        li   t1, {encode("addi", rd=A0, imm=0x7F) >> 16 & 0xFFFF:#x}
        sh   t1, 2(t0)           # patch the upper half: the immediate becomes 0x7f
        j    skip
    skip:
        nop
    later:
        addi a0, zero, 5
        wfi
    """,
        mode=mode,
    )
    assert ran.x("a0") == 0x7F


def test_a_host_write_to_translated_code_takes_effect_on_the_next_run():
    m = load_code([encode("addi", rd=A0, rs1=A0, imm=1), encode("jal", imm=-4)])
    m.run(100)
    assert m.cpu.x[A0] == 50
    m.bus.write_bytes(RAM_BASE, encode("addi", rd=A0, rs1=A0, imm=10).to_bytes(4, "little"))
    m.run(100)
    assert m.cpu.x[A0] == 50 + 500


def test_self_modifying_code_gives_the_same_state_in_any_run_split():
    src = f"""
        li   s0, 40
        la   t0, target
        li   t2, 0x00100000
    loop:
    target:
        addi a0, a0, 1
        lw   t1, 0(t0)
        add  t1, t1, t2
        sw   t1, 0(t0)
        la   t3, other
        li   t4, {encode("addi", rd=A1, rs1=A1, imm=3):#x}
        sw   t4, 0(t3)
    other:
        addi a1, a1, 1
        addi s0, s0, -1
        bnez s0, loop
        wfi
    """
    whole = load_code(src)
    assert whole.run(10_000).reason is StopReason.WFI_IDLE
    for piece in (1, 2, 3, 5, 7, 11):
        split = load_code(src)
        while split.run(piece).reason is StopReason.BUDGET:
            pass
        assert state(split) == state(whole), piece


# -- breakpoints -------------------------------------------------------------------------------

LOOP = """
    li   a0, 0
head:
    addi a0, a0, 1
    addi a1, a1, 2
    j    head
"""
HEAD = RAM_BASE + 4


@pytest.mark.parametrize("mode", MODES)
def test_a_breakpoint_stops_before_the_instruction_at_its_pc(mode):
    m = load_code([NOP, NOP, NOP, encode("addi", rd=A0, imm=1), WFI])
    m.set_breakpoints({RAM_BASE + 12})
    result = run_mode(m, 100, mode)
    assert result.reason is StopReason.BREAKPOINT and result.executed == 3
    assert m.cpu.pc == RAM_BASE + 12 and m.cpu.x[A0] == 0


@pytest.mark.parametrize("mode", MODES)
def test_resuming_at_a_breakpoint_executes_it(mode):
    m = load_code([NOP, encode("addi", rd=A0, imm=1), NOP, WFI])
    m.set_breakpoints({RAM_BASE + 4})
    run_mode(m, 100, mode)
    result = run_mode(m, 100, mode)
    assert result.reason is StopReason.WFI_IDLE and m.cpu.x[A0] == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_breakpoint_at_a_loop_head_stops_on_every_iteration(mode):
    m = load_code(LOOP)
    m.set_breakpoints({HEAD})
    first = run_mode(m, 1000, mode)
    assert first.reason is StopReason.BREAKPOINT and first.executed == 1
    for iteration in range(1, 4):
        # Resuming at the breakpoint runs the loop body once and stops at the head again.
        again = run_mode(m, 1000, mode)
        assert (again.reason, again.executed, m.cpu.pc) == (StopReason.BREAKPOINT, 3, HEAD)
        assert m.cpu.x[A0] == iteration


def test_a_breakpoint_set_on_an_already_hot_loop_stops_on_every_iteration():
    # No test knobs: 1000 instructions make the loop hot, so it runs translated.
    m = load_code(LOOP)
    assert m.run(1000).reason is StopReason.BUDGET
    assert m.cpu.pc == HEAD  # li + 333 iterations of 3
    m.set_breakpoints({HEAD})
    result = m.run(1000)  # resumes at the breakpoint: one iteration, then stop at it again
    assert (result.reason, result.executed, m.cpu.pc) == (StopReason.BREAKPOINT, 3, HEAD)


def test_a_breakpoint_on_a_jump_to_itself_stops_after_each_jump():
    m = load_code([encode("jal", imm=0)])
    m.set_breakpoints({RAM_BASE})
    result = m.run(1000)  # resumes at the breakpoint: one jump, then back at it
    assert (result.reason, result.executed) == (StopReason.BREAKPOINT, 1)


def test_a_breakpoint_at_the_trap_handler_stops_on_trap_entry():
    m = load_code([NOP, encode("ecall")])
    m.set_breakpoints({HANDLER})
    result = m.run(100)
    assert result.reason is StopReason.BREAKPOINT and m.cpu.pc == HANDLER
    assert m.cpu.mcause == 11 and result.executed == 2


def test_clearing_breakpoints_lets_the_run_continue_to_the_budget():
    m = load_code(LOOP)
    m.set_breakpoints({HEAD})
    assert m.run(1000).reason is StopReason.BREAKPOINT
    m.set_breakpoints(set())
    result = m.run(30)
    assert result.reason is StopReason.BUDGET and m.cpu.x[A0] == 10


def test_a_budget_that_ends_on_a_breakpoint_reports_the_budget():
    m = load_code([NOP, NOP, NOP])
    m.set_breakpoints({RAM_BASE + 8})
    result = m.run(2)
    assert result.reason is StopReason.BUDGET and m.cpu.pc == RAM_BASE + 8


def test_the_translated_test_mode_really_runs_translated_regions():
    # A guard for the helpers: "translated" must reach the translator, "interpreted" not.
    translated = load_code([NOP, NOP, WFI])
    run_mode(translated, 10, "translated")
    assert translated._regions, "no region was translated: the eager-translation knob broke"
    cold = load_code([NOP, NOP, WFI])
    run_mode(cold, 10, "interpreted")
    assert not cold._regions
