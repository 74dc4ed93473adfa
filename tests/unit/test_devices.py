"""The devices on QEMU virt's map: sifive_test finisher, CLINT (msip, mtimecmp, mtime on the
virtual clock) and the ns16550a UART, plus unmapped addresses."""

from __future__ import annotations

import pytest

from vm import StopReason
from vm.asm import encode
from vm.csr import MIP_MSIP, MIP_MTIP, Cause

from .helpers import (
    CLINT,
    CLINT_MSIP,
    CLINT_MTIME,
    CLINT_MTIMECMP,
    FINISHER,
    HANDLER,
    MODES,
    NOP,
    RAM_BASE,
    UART0,
    WFI,
    load_code,
    new_machine,
    run_asm,
    run_mode,
    trapped,
)

A0, A1, A2 = 10, 11, 12


def store(
    name: str, address: int, value: int, *, extra: list[int] | None = None, mode="interpreted"
):
    """`name value, 0(address)` then `wfi`; returns the Ran."""
    words = [encode(name, rs1=A1, rs2=A2), *(extra or []), WFI]
    return run_asm(words, regs={A1: address, A2: value}, mode=mode)


def load(name: str, address: int, mode="interpreted"):
    return run_asm([encode(name, rd=A0, rs1=A1), WFI], regs={A1: address, A0: 0xDEAD}, mode=mode)


# -- sifive_test finisher -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_writing_0x5555_to_the_finisher_passes(mode):
    ran = run_asm(
        [NOP, encode("sw", rs1=A1, rs2=A2), NOP], regs={A1: FINISHER, A2: 0x5555}, mode=mode
    )
    assert ran.reason is StopReason.FINISHER_PASS
    assert ran.result.executed == 2 and ran.cpu.pc == RAM_BASE + 8
    assert ran.result.finisher_code is None


@pytest.mark.parametrize("code", [0, 1, 42, 0xFFFF])
def test_writing_code_shifted_or_0x3333_fails_with_that_code(code):
    ran = store("sw", FINISHER, code << 16 | 0x3333)
    assert ran.reason is StopReason.FINISHER_FAIL
    assert ran.result.finisher_code == code
    assert ran.result.executed == 1


def test_writing_0x7777_requests_a_reset():
    ran = store("sw", FINISHER, 0x7777)
    assert ran.reason is StopReason.FINISHER_RESET
    assert ran.result.finisher_code is None


def test_the_status_is_the_low_sixteen_bits_of_a_word_write():
    assert store("sw", FINISHER, 0xABCD_5555).reason is StopReason.FINISHER_PASS
    assert store("sw", FINISHER, 0x0001_7777).reason is StopReason.FINISHER_RESET


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0x5555, StopReason.FINISHER_PASS),
        (0x3333, StopReason.FINISHER_FAIL),
        (0x7777, StopReason.FINISHER_RESET),
    ],
)
def test_a_halfword_write_to_the_finisher_works(value, reason):
    ran = store("sh", FINISHER, value)
    assert ran.reason is reason
    if reason is StopReason.FINISHER_FAIL:
        assert ran.result.finisher_code == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_byte_write_to_the_finisher_is_a_store_access_fault(mode):
    ran = store("sb", FINISHER, 0x55, mode=mode)
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mtval, ran.cpu.mepc) == (
        Cause.STORE_ACCESS_FAULT,
        FINISHER,
        RAM_BASE,
    )


def test_a_byte_read_of_the_finisher_is_a_load_access_fault():
    ran = load("lbu", FINISHER)
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mtval) == (Cause.LOAD_ACCESS_FAULT, FINISHER)


@pytest.mark.parametrize("name", ["lw", "lh", "lhu"])
def test_finisher_reads_return_zero(name):
    ran = load(name, FINISHER)
    assert ran.reason is StopReason.WFI_IDLE and ran.cpu.pc == RAM_BASE + 8
    assert ran.x(A0) == 0


@pytest.mark.parametrize(
    ("address", "value"),
    [(FINISHER, 0x1234), (FINISHER, 0x5554), (FINISHER + 4, 0x5555), (FINISHER + 0xFFC, 0x5555)],
)
def test_other_finisher_writes_are_ignored(address, value):
    ran = store("sw", address, value)
    assert ran.reason is StopReason.WFI_IDLE and ran.cpu.pc == RAM_BASE + 8


def test_the_finisher_window_is_one_page():
    # The next page is the RTC's: a finisher word written there does not end the run.
    ran = store("sw", FINISHER + 0x1000 + 0x20, 0x5555)
    assert ran.reason is StopReason.WFI_IDLE


# -- CLINT: msip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_msip_drives_the_software_interrupt_pending_bit(mode):
    ran = run_asm(
        [
            encode("sw", rs1=A1, rs2=A2),
            encode("csrrs", rd=13, csr=0x344),
            encode("lw", rd=14, rs1=A1),
            encode("sw", rs1=A1, rs2=0),
            encode("csrrs", rd=15, csr=0x344),
            encode("lw", rd=16, rs1=A1),
            WFI,
        ],
        regs={A1: CLINT_MSIP, A2: 1},
        mode=mode,
    )
    assert ran.x(13) & MIP_MSIP and ran.x(14) == 1
    assert not ran.x(15) & MIP_MSIP and ran.x(16) == 0


def test_msip_keeps_only_bit_zero():
    ran = run_asm(
        [encode("sw", rs1=A1, rs2=A2), encode("lw", rd=A0, rs1=A1), WFI],
        regs={A1: CLINT_MSIP, A2: 0xFFFF_FFFE},
    )
    assert ran.x(A0) == 0 and not ran.cpu.mip & MIP_MSIP


@pytest.mark.parametrize(
    ("name", "address"),
    [("lb", CLINT_MSIP), ("lh", CLINT_MTIME), ("lbu", CLINT_MTIMECMP), ("lhu", CLINT_MTIME + 4)],
)
def test_narrow_clint_loads_are_access_faults(name, address):
    ran = load(name, address)
    assert trapped(ran) and (ran.cpu.mcause, ran.cpu.mtval) == (Cause.LOAD_ACCESS_FAULT, address)


@pytest.mark.parametrize(("name", "address"), [("sb", CLINT_MSIP), ("sh", CLINT_MTIMECMP)])
def test_narrow_clint_stores_are_access_faults(name, address):
    ran = store(name, address, 1)
    assert trapped(ran) and (ran.cpu.mcause, ran.cpu.mtval) == (Cause.STORE_ACCESS_FAULT, address)
    assert not ran.cpu.mip & MIP_MSIP


def test_unused_clint_offsets_read_zero():
    for offset in (0x4, 0x8000, 0xBFF0):
        ran = load("lw", CLINT + offset)
        assert ran.reason is StopReason.WFI_IDLE and ran.x(A0) == 0, hex(offset)


@pytest.mark.parametrize("offset", [0xC000, 0xFFFC])
def test_the_clint_window_ends_at_0xc000_as_qemus_aclint_does(offset):
    ran = load("lw", CLINT + offset)
    assert trapped(ran) and ran.cpu.mcause == Cause.LOAD_ACCESS_FAULT


# -- CLINT: mtime and mtimecmp --------------------------------------------------------------------


def test_mtimecmp_resets_to_zero_so_the_timer_interrupt_is_pending():
    m = new_machine()
    assert m.cpu.mip == MIP_MTIP
    assert m.bus.read(CLINT_MTIMECMP, 4) == 0 and m.bus.read(CLINT_MTIMECMP + 4, 4) == 0
    assert m.bus.read(CLINT_MTIME, 4) == 0 and m.bus.read(CLINT_MTIME + 4, 4) == 0


def test_mtimecmp_reads_back_both_halves():
    ran = run_asm(
        [
            encode("sw", rs1=A1, rs2=A2),
            encode("sw", rs1=A1, rs2=13, imm=4),
            encode("lw", rd=14, rs1=A1),
            encode("lw", rd=15, rs1=A1, imm=4),
            WFI,
        ],
        regs={A1: CLINT_MTIMECMP, A2: 0x1234_5678, 13: 0x9ABC_DEF0},
    )
    assert (ran.x(14), ran.x(15)) == (0x1234_5678, 0x9ABC_DEF0)


def test_a_future_mtimecmp_clears_mtip_and_a_past_one_sets_it():
    ran = run_asm(
        [
            encode("sw", rs1=A1, rs2=A2, imm=4),  # mtimecmp hi = 1: far future
            encode("csrrs", rd=13, csr=0x344),
            encode("sw", rs1=A1, rs2=0, imm=4),  # mtimecmp = 0: in the past
            encode("csrrs", rd=14, csr=0x344),
            WFI,
        ],
        regs={A1: CLINT_MTIMECMP, A2: 1},
    )
    assert ran.x(13) & MIP_MTIP == 0
    assert ran.x(14) & MIP_MTIP == MIP_MTIP


def timer_program(compare: int) -> tuple[list[int], int]:
    """Arm mtimecmp = compare, enable the timer interrupt, spin. Returns the words and the
    icount of the store that arms it (that store included)."""
    words = [
        encode("sw", rs1=A1, rs2=A2),  # mtimecmp lo = compare (hi stays 0)
        encode("csrrs", rd=13, csr=0x344),  # a1 still sees MTIP? (0 if the compare is ahead)
        encode("addi", rd=14, imm=0x80),
        encode("csrrw", rs1=14, csr=0x304),  # mie = MTIE
        encode("csrrsi", csr=0x300, imm=8),  # mstatus.MIE
        encode("jal", imm=0),
    ]
    return words, 1


def expected_timer_icount(store_icount: int, compare: int, shift: int) -> int:
    """QEMU's ACLINT: at the mtimecmp write, the timer is armed for
    now_ns + (compare - mtime) * 100 ns; it fires at the first instruction boundary whose
    virtual time (icount << shift) reaches that deadline."""
    now_ns = store_icount << shift
    deadline = now_ns + (compare - now_ns // 100) * 100
    return -(-deadline >> shift)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("compare", "shift"), [(3, 0), (50, 0), (1, 0), (40, 7), (41, 7), (1000, 3), (70, 10), (13, 5)]
)
def test_the_timer_interrupt_arrives_at_the_deadline_icount(compare, shift, mode):
    words, store_icount = timer_program(compare)
    m = load_code(words, regs={A1: CLINT_MTIMECMP, A2: compare}, shift=shift)
    m.set_breakpoints({HANDLER})
    result = run_mode(m, 100_000, mode)
    assert result.reason is StopReason.BREAKPOINT
    expected = expected_timer_icount(store_icount, compare, shift)
    assert expected > 5  # the compare is ahead of mtime at the write: a real wait
    assert m.cpu.x[13] & MIP_MTIP == 0
    assert m.cpu.icount == expected
    assert m.cpu.mcause == 0x8000_0007
    assert m.cpu.mepc == RAM_BASE + 20
    # mtime has reached mtimecmp when the interrupt is taken
    assert (m.cpu.icount << shift) // 100 >= compare


def test_the_timer_interrupt_is_taken_with_a_budget_that_ends_exactly_there():
    words, store_icount = timer_program(5)
    expected = expected_timer_icount(store_icount, 5, 0)
    m = load_code(words, regs={A1: CLINT_MTIMECMP, A2: 5})
    m.set_breakpoints({HANDLER})
    first = m.run(expected)
    # The boundary is reached with the budget: the interrupt is entered before returning.
    assert first.reason is StopReason.BUDGET and first.executed == expected
    assert m.cpu.pc == HANDLER and m.cpu.mcause == 0x8000_0007
    assert m.cpu.mepc == RAM_BASE + 20


def test_without_mie_the_timer_only_sets_mtip():
    m = load_code(
        [encode("sw", rs1=A1, rs2=A2), encode("jal", imm=0)], regs={A1: CLINT_MTIMECMP, A2: 2}
    )
    m.run(150)
    assert m.cpu.mip & MIP_MTIP == 0
    m.run(100)
    assert m.cpu.mip & MIP_MTIP == MIP_MTIP and m.cpu.mcause == 0


@pytest.mark.parametrize("mode", MODES)
def test_writing_mtime_moves_the_clock_and_re_evaluates_the_timer(mode):
    ran = run_asm(
        [
            encode("sw", rs1=A1, rs2=A2),  # mtimecmp = 1000 (ahead: MTIP clears)
            encode("csrrs", rd=13, csr=0x344),
            encode("sw", rs1=15, rs2=16),  # mtime lo = 5000 (now past mtimecmp: MTIP sets)
            encode("csrrs", rd=14, csr=0x344),
            encode("lw", rd=17, rs1=15),
            encode("lw", rd=18, rs1=15, imm=4),
            WFI,
        ],
        regs={A1: CLINT_MTIMECMP, A2: 1000, 15: CLINT_MTIME, 16: 5000},
        mode=mode,
    )
    assert ran.x(13) & MIP_MTIP == 0
    assert ran.x(14) & MIP_MTIP == MIP_MTIP
    assert ran.x(17) == 5000 and ran.x(18) == 0


def test_mtime_keeps_counting_from_a_written_value():
    nops = 450
    ran = run_asm(
        [encode("sw", rs1=A1, rs2=A2), *([NOP] * nops), encode("lw", rd=A0, rs1=A1), WFI],
        regs={A1: CLINT_MTIME, A2: 7000},
    )
    # Written at icount 1 (mtime 0 then); read at icount nops + 2.
    assert ran.x(A0) == 7000 + (nops + 2) // 100 - 1 // 100


def test_writing_mtime_high_sets_the_upper_word():
    ran = run_asm(
        [
            encode("sw", rs1=A1, rs2=A2, imm=4),
            encode("lw", rd=13, rs1=A1, imm=4),
            encode("lw", rd=14, rs1=A1),
            WFI,
        ],
        regs={A1: CLINT_MTIME, A2: 0x1234},
    )
    assert ran.x(13) == 0x1234 and ran.x(14) == 0


def test_mtime_reads_through_the_bus_use_the_current_icount():
    m = load_code([NOP] * 8, shift=7)
    m.run(8)
    assert m.bus.read(CLINT_MTIME, 4) == (8 << 7) // 100


def test_mtime_carries_into_the_high_word_at_large_shifts():
    m = load_code([NOP], shift=10)
    m.cpu.icount = (1 << 32) * 100 >> 10  # 2**32 ticks, in instructions at shift 10
    assert m.bus.read(CLINT_MTIME + 4, 4) == 1
    assert m.bus.read(CLINT_MTIME, 4) == 0


# -- ns16550a UART ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_bytes_written_to_thr_appear_on_the_console_in_order(mode):
    src = """
        li   t0, 0x10000000
        la   t1, msg
    1:  lbu  t2, 0(t1)
        beqz t2, 2f
        sb   t2, 0(t0)
        addi t1, t1, 1
        j    1b
    2:  wfi
    msg: .asciz "Hello, UART!\\n"
    """
    ran = run_asm(src, mode=mode)
    assert ran.reason is StopReason.WFI_IDLE
    assert ran.m.console_output() == b"Hello, UART!\n"


@pytest.mark.parametrize(
    ("name", "value", "out"),
    [("sw", 0x1234_5641, b"A"), ("sh", 0x0142, b"B"), ("sb", 0xFFFF_FF43, b"C")],
)
def test_any_write_width_sends_the_low_byte(name, value, out):
    ran = store(name, UART0, value)
    assert ran.reason is StopReason.WFI_IDLE
    assert ran.m.console_output() == out


def test_the_console_sink_receives_each_byte_as_it_is_written():
    m = load_code(
        [encode("sb", rs1=A1, rs2=A2), encode("sb", rs1=A1, rs2=13), WFI],
        regs={A1: UART0, A2: ord("x"), 13: ord("y")},
    )
    seen = []
    m.console_sink = seen.append
    m.run(10)
    assert seen == [b"x", b"y"]


@pytest.mark.parametrize(
    ("offset", "value"),
    [(0, 0), (1, 0), (2, 0x01), (3, 0), (5, 0x60), (6, 0xB0), (7, 0)],
    ids=["RBR", "IER", "IIR", "LCR", "LSR", "MSR", "SCR"],
)
def test_uart_registers_read_their_reset_values(offset, value):
    ran = load("lbu", UART0 + offset)
    assert ran.reason is StopReason.WFI_IDLE
    assert ran.x(A0) == value


def test_mcr_reads_qemus_reset_value_with_out2_set():
    # QEMU's serial_reset() sets MCR = UART_MCR_OUT2 (0x08); QEMU 7.2.22 reads 0x08 here.
    ran = load("lbu", UART0 + 4)
    assert ran.x(A0) == 0x08


@pytest.mark.parametrize(
    ("name", "offset", "value"), [("lw", 0, 0), ("lhu", 2, 0x01), ("lh", 6, 0xB0)]
)
def test_wider_aligned_uart_reads_return_the_register_byte(name, offset, value):
    ran = load(name, UART0 + offset)
    assert ran.reason is StopReason.WFI_IDLE
    assert ran.x(A0) == value


def test_lsr_says_the_transmitter_is_always_empty():
    ran = run_asm(
        [encode("sb", rs1=A1, rs2=A2), encode("lbu", rd=A0, rs1=A1, imm=5), WFI],
        regs={A1: UART0, A2: ord("z")},
    )
    assert ran.x(A0) == 0x60


@pytest.mark.parametrize(
    ("offset", "written", "read"),
    [(3, 0x1B, 0x1B), (4, 0xFF, 0x1F), (7, 0xA5, 0xA5), (1, 0xFF, 0x0F)],
)
def test_uart_control_registers_keep_their_writable_bits(offset, written, read):
    ran = run_asm(
        [encode("sb", rs1=A1, rs2=A2, imm=offset), encode("lbu", rd=A0, rs1=A1, imm=offset), WFI],
        regs={A1: UART0, A2: written},
    )
    assert ran.x(A0) == read
    assert ran.m.console_output() == b""


@pytest.mark.parametrize("mode", MODES)
def test_dlab_redirects_offsets_zero_and_one_to_the_divisor_latch(mode):
    ran = run_asm(
        """
        li   t0, 0x10000000
        li   t1, 0x83
        sb   t1, 3(t0)          # LCR: DLAB + 8N1
        li   t1, 0x34
        sb   t1, 0(t0)          # DLL
        li   t1, 0x12
        sb   t1, 1(t0)          # DLM
        lbu  a0, 0(t0)
        lbu  a1, 1(t0)
        li   t1, 0x03
        sb   t1, 3(t0)          # DLAB off
        lbu  a2, 1(t0)          # IER again
        li   t1, 'k'
        sb   t1, 0(t0)          # THR again
        wfi
    """,
        mode=mode,
    )
    assert (ran.x("a0"), ran.x("a1"), ran.x("a2")) == (0x34, 0x12, 0)
    assert ran.m.console_output() == b"k"


# QEMU's virt reserves 0x100 bytes for UART0 but serial_mm maps only 8 << reg-shift = 8
# of them; the rest is unmapped (checked on the reference QEMU: lbu 0xd(uart) faults).
@pytest.mark.parametrize("offset", [0x8, 0xD, 0x48, 0xF8, 0x100])
def test_the_uart_window_is_eight_bytes_and_the_rest_faults(offset):
    ran = load("lbu", UART0 + offset)
    assert trapped(ran) and ran.cpu.mcause == Cause.LOAD_ACCESS_FAULT


def test_a_word_load_that_runs_past_the_uart_window_faults():
    ran = load("lw", UART0 + 5)
    assert trapped(ran) and ran.cpu.mcause == Cause.LOAD_ACCESS_FAULT


# -- unmapped space ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        0x0,
        0x0C60_0000,  # just past the PLIC's 6 MiB window
        0x0010_2000,  # just past the RTC
        0x1000_1000,  # a virtio-mmio slot: detfuzz's own devices are not in the default map
        0x0201_0000,
        0x3000_0000,
        0x7FFF_FFFC,
        0xFFFF_FFFC,
    ],
)
def test_addresses_outside_every_device_fault(address):
    ran = load("lw", address)
    assert trapped(ran) and (ran.cpu.mcause, ran.cpu.mtval) == (Cause.LOAD_ACCESS_FAULT, address)
    ran = store("sw", address, 1)
    assert trapped(ran) and (ran.cpu.mcause, ran.cpu.mtval) == (Cause.STORE_ACCESS_FAULT, address)


def test_a_misaligned_word_load_of_mtime_reads_the_bytes_at_that_address():
    # QEMU 7.2 splits a misaligned MMIO load into the two aligned loads around it and
    # combines them (cputlb's do_unaligned_access): with mtime = 5 << 32 | small, a `lw` at
    # mtime + 1 reads 0x0500_0000 | (mtime_lo >> 8) on the reference QEMU.
    ran = run_asm(
        [
            encode("sw", rs1=A1, rs2=A2, imm=4),  # mtime hi = 5
            encode("lw", rd=A0, rs1=A1, imm=1),
            WFI,
        ],
        regs={A1: CLINT_MTIME, A2: 5},
    )
    assert ran.reason is StopReason.WFI_IDLE
    assert ran.x(A0) == 0x0500_0000  # mtime lo is 0 at icount 2


def test_host_bus_accesses_reach_the_same_devices():
    m = new_machine()
    assert m.bus.read(UART0 + 5, 1) == 0x60
    m.bus.write(UART0, 1, ord("h"))
    assert m.console_output() == b"h"
    m.bus.write(CLINT_MSIP, 4, 1)
    assert m.cpu.mip & MIP_MSIP


# -- system reset (finisher 0x7777) --------------------------------------------------------------


def test_a_guest_reset_restores_the_image_and_devices_and_keeps_the_rest():
    from vm import Machine
    from vm.asm import assemble
    from vm.boot import ROM_BASE
    from vm.loader import load_program

    program = assemble("""
        li   t0, 0x80100000
        li   t1, 0xabc
        sw   t1, 0(t0)          # RAM outside the image
        la   t2, word
        sw   t1, 0(t2)          # the image itself
        li   t3, 0x10000007
        sb   t1, 0(t3)          # UART SCR
        li   t4, 0x00100000
        li   t5, 0x7777
        sw   t5, 0(t4)
    word: .word 0x99
    """)
    m = Machine()
    load_program(m, program)
    result = m.run(1000)
    assert result.reason is StopReason.FINISHER_RESET
    assert m.cpu.pc == ROM_BASE
    assert m.bus.read(0x8010_0000, 4) == 0xABC  # kept
    assert m.bus.read(0x8000_0000 + program.index((0x99).to_bytes(4, "little")), 4) == 0x99
    assert m.bus.read(0x1000_0007, 1) == 0  # UART reset
    assert m.cpu.x[6] == 0xABC  # GPRs kept
    assert m.run(6).reason is StopReason.BUDGET and m.cpu.pc == 0x8000_0000  # boots again
