"""Synchronous traps, MRET, interrupts (priority, vectoring, boundaries), WFI and the
fault-loop stop."""

from __future__ import annotations

import pytest

from vm import StopReason
from vm.asm import assemble_program, encode
from vm.csr import MIP_MEIP, MIP_MSIP, MIP_MTIP, Cause

from .helpers import (
    HANDLER,
    MODES,
    NOP,
    RAM_BASE,
    WFI,
    load_code,
    new_machine,
    run_asm,
    run_mode,
    run_to_wfi,
    trapped,
)

A0, A1 = 10, 11
MSTATUS_MIE, MSTATUS_MPIE, MPP_M = 0x8, 0x80, 0x1800
IRQ = 1 << 31

# A handler that steps over the trapping instruction and returns, counting traps in s11.
SKIP_HANDLER = """
handler:
    addi s11, s11, 1
    csrr t6, mepc
    addi t6, t6, 4
    csrw mepc, t6
    mret
"""


@pytest.mark.parametrize(
    ("word", "cause", "tval"),
    [
        (encode("ecall"), Cause.ECALL_M, 0),
        (encode("ebreak"), Cause.BREAKPOINT, 0),
        (0xFFFF_FFFF, Cause.ILLEGAL_INSN, 0xFFFF_FFFF),
        (0x0000_0000, Cause.ILLEGAL_INSN, 0),
        (0x0200_1013, Cause.ILLEGAL_INSN, 0x0200_1013),  # slli with shamt[5] set
        (0x1020_0073, Cause.ILLEGAL_INSN, 0x1020_0073),  # sret
        (0x0000_3003, Cause.ILLEGAL_INSN, 0x0000_3003),  # ld
    ],
)
def test_a_trap_records_mepc_mcause_and_mtval(word, cause, tval):
    for mode in MODES:
        ran = run_asm([NOP, word, WFI], regs={A0: 1}, mode=mode)
        assert trapped(ran)
        c = ran.cpu
        assert (c.mepc, c.mcause, c.mtval) == (RAM_BASE + 4, cause, tval)


@pytest.mark.parametrize("mie_before", [0, 1])
def test_trap_entry_moves_mie_to_mpie_and_clears_mie(mie_before):
    m = load_code([encode("ecall")])
    m.cpu.mstatus = MSTATUS_MIE if mie_before else MSTATUS_MPIE
    m.cpu.update_irq_pending()
    m.run(10)
    assert m.cpu.csr_read(0x300) == MPP_M | (MSTATUS_MPIE if mie_before else 0)


def test_trap_entry_jumps_to_the_mtvec_base_even_in_vectored_mode():
    m = load_code([encode("ecall")])
    m.cpu.mtvec = HANDLER | 1
    m.run(10)
    assert m.cpu.pc == HANDLER + 4 and m.cpu.mcause == Cause.ECALL_M


def test_mpp_reads_machine_mode_after_a_trap_and_after_mret():
    ran = run_to_wfi("""
        la   t0, h
        csrw mtvec, t0
        ecall
        csrr a1, mstatus
        wfi
    h:  csrr a0, mstatus
        csrr t0, mepc
        addi t0, t0, 4
        csrw mepc, t0
        mret
    """)
    assert ran.x("a0") & 0x1800 == 0x1800
    assert ran.x("a1") & 0x1800 == 0x1800


@pytest.mark.parametrize(
    ("mstatus", "after"),
    [
        (MSTATUS_MPIE, MSTATUS_MIE | MSTATUS_MPIE),
        (0, MSTATUS_MPIE),
        (MSTATUS_MIE, MSTATUS_MPIE),
        (MSTATUS_MIE | MSTATUS_MPIE, MSTATUS_MIE | MSTATUS_MPIE),
    ],
)
def test_mret_restores_mie_from_mpie_and_sets_mpie(mstatus, after):
    m = load_code([encode("mret")])
    m.bus.write_bytes(RAM_BASE + 0x100, WFI.to_bytes(4, "little"))
    m.cpu.mstatus = mstatus
    m.cpu.mepc = RAM_BASE + 0x100
    m.cpu.mie = 0  # nothing can interrupt
    m.cpu.update_irq_pending()
    result = m.run(10)
    assert result.reason is StopReason.WFI_IDLE and m.cpu.pc == RAM_BASE + 0x104
    assert m.cpu.csr_read(0x300) == MPP_M | after


@pytest.mark.parametrize("mode", MODES)
def test_a_handler_can_skip_the_trapping_instruction_and_resume(mode):
    ran = run_to_wfi(
        """
        la   t0, handler
        csrw mtvec, t0
        li   a0, 1
        ecall
        addi a0, a0, 1
        ebreak
        addi a0, a0, 1
        .word 0xffffffff
        addi a0, a0, 1
        lw   a1, 0(zero)
        addi a0, a0, 1
        wfi
    """
        + SKIP_HANDLER,
        mode=mode,
    )
    assert ran.x("a0") == 5
    assert ran.x("s11") == 4
    assert ran.cpu.mcause == Cause.LOAD_ACCESS_FAULT and ran.cpu.mtval == 0


@pytest.mark.parametrize("mode", MODES)
def test_registers_written_before_a_trap_in_the_same_block_are_kept(mode):
    ran = run_asm(
        [
            encode("addi", rd=A0, imm=11),
            encode("addi", rd=A1, rs1=A0, imm=1),
            encode("lw", rd=12, rs1=0, imm=0x10),  # faults
            encode("addi", rd=13, imm=99),  # never runs
            WFI,
        ],
        mode=mode,
    )
    assert trapped(ran)
    assert (ran.x(A0), ran.x(A1), ran.x(12), ran.x(13)) == (11, 12, 0, 0)
    assert ran.cpu.mepc == RAM_BASE + 8


@pytest.mark.parametrize("mode", MODES)
def test_a_trap_inside_the_handler_overwrites_mepc(mode):
    ran = run_to_wfi(
        """
        la   t0, h1
        csrw mtvec, t0
        ecall
    h1: la   t0, h2
        csrw mtvec, t0
        csrr s0, mepc
        ebreak
    h2: wfi
    """,
        mode=mode,
    )
    prog = assemble_program("""
        la t0, h1
        csrw mtvec, t0
        ecall
    h1: la t0, h2
        csrw mtvec, t0
        csrr s0, mepc
        ebreak
    h2: wfi
    """)
    assert ran.x("s0") == RAM_BASE + 12
    assert ran.cpu.mepc == prog.address_of("h2") - 4
    assert ran.cpu.mcause == Cause.BREAKPOINT


def test_an_instruction_fetch_fault_reports_the_target_in_mepc_and_mtval():
    ran = run_asm([encode("jalr", rd=1, rs1=A0)], regs={A0: 0x0002_0000})
    assert trapped(ran)
    c = ran.cpu
    assert (c.mcause, c.mepc, c.mtval) == (Cause.INSN_ACCESS_FAULT, 0x0002_0000, 0x0002_0000)
    assert c.x[1] == RAM_BASE + 4  # the jump itself completed


def test_executing_from_mmio_is_an_instruction_access_fault():
    ran = run_asm([encode("jalr", rs1=A0)], regs={A0: 0x1000_0000})
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mepc) == (Cause.INSN_ACCESS_FAULT, 0x1000_0000)


# -- the fault loop --------------------------------------------------------------------------


def test_a_handler_at_an_unmapped_address_stops_with_fault_loop():
    m = load_code([NOP, encode("ecall")], handler=False)
    m.cpu.mtvec = 0x0003_0000
    result = m.run(1_000_000)
    assert result.reason is StopReason.FAULT_LOOP
    assert result.executed == 2
    assert m.cpu.pc == 0x0003_0000
    assert m.cpu.mcause == Cause.INSN_ACCESS_FAULT


@pytest.mark.parametrize(
    "first",
    [
        0xFFFF_FFFF,
        encode("ecall"),
        encode("ebreak"),
        encode("lw", rd=A0, rs1=0),
        encode("sw", rs1=0, rs2=A0),
        encode("csrrs", rd=A0, csr=0x7C0),
        encode("jal", imm=2),
    ],
    ids=["illegal", "ecall", "ebreak", "load-fault", "store-fault", "bad-csr", "misaligned-jal"],
)
def test_a_handler_whose_first_instruction_faults_stops_with_fault_loop(first):
    for mode in MODES:
        m = load_code([encode("ecall")], handler=False)
        m.bus.write_bytes(HANDLER, first.to_bytes(4, "little"))
        m.cpu.mtvec = HANDLER
        result = run_mode(m, 1_000_000, mode)
        assert result.reason is StopReason.FAULT_LOOP
        assert result.executed < 10
        assert m.cpu.pc == HANDLER


def test_a_fresh_machine_at_pc_zero_stops_with_fault_loop_without_executing():
    m = new_machine()
    result = m.run(1000)
    assert result.reason is StopReason.FAULT_LOOP
    assert result.executed == 0 and m.cpu.icount == 0


def test_a_handler_that_retires_before_faulting_is_not_a_fault_loop():
    m = load_code([encode("ecall")], handler=False)
    m.bus.write_bytes(HANDLER, bytes.fromhex("13000000") + encode("ecall").to_bytes(4, "little"))
    m.cpu.mtvec = HANDLER
    result = m.run(1000)
    assert result.reason is StopReason.BUDGET and result.executed == 1000


def test_run_can_be_called_again_after_a_fault_loop():
    m = load_code([encode("ecall")], handler=False)
    m.cpu.mtvec = 0x40
    assert m.run(100).reason is StopReason.FAULT_LOOP
    assert m.run(100).reason is StopReason.FAULT_LOOP
    m.bus.write_bytes(HANDLER, WFI.to_bytes(4, "little"))
    m.cpu.pc = HANDLER
    assert m.run(100).reason is StopReason.WFI_IDLE


# -- interrupts -----------------------------------------------------------------------------


def test_the_timer_interrupt_is_pending_from_reset():
    assert new_machine().cpu.mip == MIP_MTIP


def run_to_handler(m, budget=1000, mode="interpreted"):
    """Run until the first instruction of the handler at HANDLER (a breakpoint there)."""
    m.set_breakpoints({HANDLER})
    result = run_mode(m, budget, mode)
    assert result.reason is StopReason.BREAKPOINT and m.cpu.pc == HANDLER, result
    return result


def test_enabling_a_pending_interrupt_takes_it_right_after_the_enabling_instruction():
    src = """
        li   t0, 0x80
        csrw mie, t0
        csrsi mstatus, 8
        addi a0, zero, 1
        wfi
    """
    for mode in MODES:
        m = load_code(src)
        run_to_handler(m, mode=mode)
        c = m.cpu
        assert (c.mcause, c.mepc, c.mtval) == (IRQ | 7, RAM_BASE + 12, 0)
        assert c.csr_read(0x300) == MPP_M | MSTATUS_MPIE
        assert c.x[A0] == 0
        assert c.icount == 3  # taking the interrupt costs no instruction


@pytest.mark.parametrize(("mie", "mstatus"), [(0x80, 0), (0, MSTATUS_MIE), (0x8, MSTATUS_MIE)])
def test_an_interrupt_is_not_taken_unless_both_mie_bit_and_mstatus_mie_are_set(mie, mstatus):
    m = load_code([NOP, NOP, encode("jal", imm=-8)])
    m.cpu.mie, m.cpu.mstatus = mie, mstatus
    m.cpu.update_irq_pending()
    result = m.run(300)
    assert result.reason is StopReason.BUDGET and m.cpu.mcause == 0


@pytest.mark.parametrize(
    ("pending", "cause"),
    [
        (MIP_MEIP | MIP_MSIP | MIP_MTIP, 11),
        (MIP_MSIP | MIP_MTIP, 3),
        (MIP_MEIP | MIP_MTIP, 11),
        (MIP_MEIP | MIP_MSIP, 11),
        (MIP_MTIP, 7),
    ],
)
def test_interrupt_priority_is_external_then_software_then_timer(pending, cause):
    m = load_code([NOP, NOP])
    m.set_cpu_irq(MIP_MTIP, level=bool(pending & MIP_MTIP))
    m.set_cpu_irq(MIP_MSIP, level=bool(pending & MIP_MSIP))
    m.set_cpu_irq(MIP_MEIP, level=bool(pending & MIP_MEIP))
    m.cpu.mie = 0x888
    m.cpu.mstatus = MSTATUS_MIE
    m.cpu.update_irq_pending()
    result = run_to_handler(m)
    assert m.cpu.mcause == IRQ | cause
    assert m.cpu.mepc == RAM_BASE  # taken before the first instruction
    assert result.executed == 0


def _priority_run():
    src = """
        la   t0, handler
        csrw mtvec, t0
        li   t0, 0x888
        csrw mie, t0
        li   t1, 0x2000000
        li   t2, 1
        sw   t2, 0(t1)
        csrsi mstatus, 8
        wfi
    handler:
        csrr t3, mcause
        slli s0, s0, 8
        andi t3, t3, 0xff
        or   s0, s0, t3
        li   t4, 11
        beq  t3, t4, ext
        li   t4, 3
        beq  t3, t4, soft
        li   t4, 0x80
        csrc mie, t4
        mret
    ext: li  t4, 0x800
        csrc mie, t4
        mret
    soft: sw zero, 0(t1)
        mret
    """
    m = load_code(src)
    m.set_cpu_irq(MIP_MEIP, level=True)
    return m, m.run(500)


def test_pending_interrupts_are_taken_one_after_another_in_priority_order():
    m, result = _priority_run()
    assert result.reason is StopReason.WFI_IDLE
    assert m.cpu.x[8] == (11 << 16) | (3 << 8) | 7  # s0 logs MEI, then MSI, then MTI
    assert m.cpu.mie == 0x008


def test_vectored_mode_sends_each_interrupt_to_base_plus_four_times_cause():
    for cause, bit in ((3, MIP_MSIP), (7, MIP_MTIP), (11, MIP_MEIP)):
        m = load_code([NOP, NOP])
        base = RAM_BASE + 0x400
        m.cpu.mtvec = base | 1
        m.set_cpu_irq(MIP_MTIP, level=False)
        m.set_cpu_irq(bit, level=True)
        m.cpu.mie = 0x888
        m.cpu.mstatus = MSTATUS_MIE
        m.cpu.update_irq_pending()
        m.set_breakpoints({base + 4 * n for n in range(16)})
        result = m.run(10)
        assert result.reason is StopReason.BREAKPOINT
        assert m.cpu.pc == base + 4 * cause
        assert m.cpu.mcause == IRQ | cause


@pytest.mark.parametrize("mode", MODES)
def test_an_interrupt_raised_by_a_store_is_taken_before_the_next_instruction(mode):
    src = """
        la   t0, handler
        csrw mtvec, t0
        li   t0, 0x8
        csrw mie, t0
        csrsi mstatus, 8
        li   t1, 0x2000000
        li   t2, 1
        li   a0, 0
        sw   t2, 0(t1)
    after:
        addi a0, a0, 1
        addi a0, a0, 1
        addi a0, a0, 1
        wfi
    handler:
        sw   zero, 0(t1)
        csrr s1, mepc
        csrr s2, mcause
        mv   s3, a0
        mret
    """
    prog = assemble_program(src)
    ran = run_asm(src, mode=mode)
    assert ran.reason is StopReason.WFI_IDLE
    assert ran.x("s1") == prog.address_of("after")
    assert ran.x("s2") == IRQ | 3
    assert ran.x("s3") == 0  # nothing after the store ran before the handler
    assert ran.x("a0") == 3  # and nothing ran twice


def test_mret_with_an_interrupt_still_pending_takes_it_at_once():
    m = load_code([encode("mret")])
    m.bus.write_bytes(RAM_BASE + 0x80, WFI.to_bytes(4, "little"))
    m.cpu.mepc = RAM_BASE + 0x80
    m.cpu.mstatus = MSTATUS_MPIE
    m.cpu.mie = 0x80  # MTIP is pending from reset
    m.cpu.update_irq_pending()
    run_to_handler(m)
    assert m.cpu.mcause == IRQ | 7
    assert m.cpu.mepc == RAM_BASE + 0x80
    assert m.cpu.icount == 1  # just the mret


@pytest.mark.parametrize("mode", MODES)
def test_the_handler_is_not_interrupted_while_mie_is_clear(mode):
    ran = run_asm(
        """
        la   t0, handler
        csrw mtvec, t0
        li   t0, 0x80
        csrw mie, t0
        csrsi mstatus, 8
        wfi
    handler:
        addi s0, s0, 1
        addi s0, s0, 1
        addi s0, s0, 1
        wfi          # MTIP & MTIE pending: a nop, MIE is 0 so no new interrupt
        addi s0, s0, 1
        j handler_end
    handler_end:
        j handler_end
    """,
        budget=100,
        mode=mode,
    )
    assert ran.reason is StopReason.BUDGET
    assert ran.x("s0") == 4
    assert ran.cpu.mcause == IRQ | 7


# -- WFI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_wfi_with_nothing_enabled_stops_with_the_pc_after_it(mode):
    ran = run_asm([NOP, WFI, NOP], mode=mode)
    assert ran.reason is StopReason.WFI_IDLE
    assert ran.cpu.pc == RAM_BASE + 8
    assert ran.result.executed == 2 and ran.cpu.retired == 2


def test_wfi_stays_idle_when_run_again_until_an_interrupt_is_enabled_and_pending():
    m = load_code([WFI, encode("addi", rd=A0, imm=5), WFI])
    assert m.run(100).reason is StopReason.WFI_IDLE
    again = m.run(100)
    assert again.reason is StopReason.WFI_IDLE and again.executed == 0
    assert m.cpu.pc == RAM_BASE + 4
    m.cpu.mie = 0x800
    m.set_cpu_irq(MIP_MEIP, level=True)  # pending and enabled, MIE clear: WFI resumes
    resumed = m.run(2)  # the addi, then the second wfi, now a nop
    assert resumed.reason is StopReason.BUDGET and resumed.executed == 2
    assert m.cpu.x[A0] == 5 and m.cpu.pc == RAM_BASE + 12
    assert m.cpu.mcause == 0


def test_wfi_with_an_enabled_pending_interrupt_is_a_nop_when_mie_is_clear():
    m = load_code([WFI, encode("addi", rd=A0, imm=5), encode("jal", imm=0)])
    m.cpu.mie = 0x80  # MTIP pending from reset
    result = m.run(50)
    assert result.reason is StopReason.BUDGET
    assert m.cpu.x[A0] == 5 and m.cpu.mcause == 0


def test_wfi_with_interrupts_enabled_takes_the_interrupt_after_the_wfi():
    m = load_code([NOP, WFI, NOP])
    m.cpu.mie = 0x800
    m.cpu.mstatus = MSTATUS_MIE
    m.cpu.update_irq_pending()
    assert m.run(10).reason is StopReason.WFI_IDLE  # nothing pending yet
    assert m.cpu.pc == RAM_BASE + 8
    m.set_cpu_irq(MIP_MEIP, level=True)
    result = run_to_handler(m)
    assert result.executed == 0
    assert m.cpu.mcause == IRQ | 11
    assert m.cpu.mepc == RAM_BASE + 8


def test_wfi_ignores_a_pending_interrupt_that_is_not_enabled_in_mie():
    m = load_code([WFI])
    m.cpu.mstatus = MSTATUS_MIE  # global enable alone does not wake WFI
    m.cpu.update_irq_pending()
    assert m.cpu.mip == MIP_MTIP
    assert m.run(10).reason is StopReason.WFI_IDLE


def test_an_unmasked_mip_value_outside_mie_never_becomes_an_interrupt():
    m = load_code([NOP] * 8)
    m.cpu.mstatus = MSTATUS_MIE
    m.cpu.mie = 0x008
    m.cpu.update_irq_pending()
    assert m.run(8).reason is StopReason.BUDGET
    assert m.cpu.mcause == 0
