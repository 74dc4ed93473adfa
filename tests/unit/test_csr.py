"""Zicsr and the machine-mode CSRs: the exact set, reset values, write masks, read-only
rules, CSRRS/CSRRC without a write, and the minstret/mcycle counters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import StopReason
from vm.asm import encode
from vm.csr import CSR_NUMBERS, MARCHID_VALUE, MIMPID_VALUE, Cause

from .helpers import (
    HANDLER,
    MASK32,
    NOP,
    RAM_BASE,
    WFI,
    load_code,
    run_asm,
    run_to_wfi,
    trapped,
)

A0, A1 = 10, 11

IMPLEMENTED = {
    "mstatus": 0x300, "misa": 0x301, "mie": 0x304, "mtvec": 0x305, "mscratch": 0x340,
    "mepc": 0x341, "mcause": 0x342, "mtval": 0x343, "mip": 0x344,
    "mcycle": 0xB00, "minstret": 0xB02, "mcycleh": 0xB80, "minstreth": 0xB82,
    "cycle": 0xC00, "instret": 0xC02, "cycleh": 0xC80, "instreth": 0xC82,
    "mvendorid": 0xF11, "marchid": 0xF12, "mimpid": 0xF13, "mhartid": 0xF14,
}  # fmt: skip
READ_ONLY = ["cycle", "instret", "cycleh", "instreth", "mvendorid", "marchid", "mimpid", "mhartid"]
READ_WRITE = [name for name in IMPLEMENTED if name not in READ_ONLY]
MISA_RV32IM = 0x4000_1100  # MXL=1, I and M
MSTATUS_MPP_M = 0x1800
MIP_MTIP = 0x80
UNIMPLEMENTED = {
    "ustatus": 0x000, "fflags": 0x001, "fcsr": 0x003, "sstatus": 0x100, "sie": 0x104,
    "stvec": 0x105, "sscratch": 0x140, "sepc": 0x141, "satp": 0x180, "medeleg": 0x302,
    "mideleg": 0x303, "mcounteren": 0x306, "menvcfg": 0x30A, "mstatush": 0x310,
    "mcountinhibit": 0x320, "mhpmevent3": 0x323, "mtinst": 0x34A, "mtval2": 0x34B,
    "pmpcfg0": 0x3A0, "pmpaddr0": 0x3B0, "tselect": 0x7A0, "dcsr": 0x7B0, "custom": 0x7C0,
    "mhpmcounter3": 0xB03, "mhpmcounter3h": 0xB83, "time": 0xC01, "timeh": 0xC81,
    "hpmcounter3": 0xC03, "mconfigptr": 0xF15, "sentropy": 0xDBF,
}  # fmt: skip


def read_csr(number: int, prefix: list[int] | None = None, regs=None, handler=True) -> int:
    """Run `prefix` then `csrrs a0, number, x0` (exactly, by budget); return a0."""
    words = [*(prefix or []), encode("csrrs", rd=A0, csr=number)]
    ran = run_asm(words, budget=len(words), regs=regs, handler=handler)
    assert ran.result.reason is StopReason.BUDGET and ran.cpu.pc == RAM_BASE + 4 * len(words)
    return ran.x(A0)


def write_then_read(number: int, value: int) -> int:
    return read_csr(
        number, prefix=[encode("csrrw", rs1=A1, csr=number)], regs={A1: value}, handler=False
    )


def test_the_implemented_csr_set_is_exactly_the_documented_one():
    assert set(CSR_NUMBERS) == set(IMPLEMENTED.values())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("mstatus", MSTATUS_MPP_M),  # MPP reads M; MIE/MPIE clear
        ("misa", MISA_RV32IM),
        ("mie", 0),
        ("mtvec", 0),
        ("mscratch", 0),
        ("mepc", 0),
        ("mcause", 0),
        ("mtval", 0),
        ("mip", MIP_MTIP),  # the CLINT resets with mtimecmp = 0 <= mtime: MTIP pending
        ("mcycle", 0),
        ("minstret", 0),
        ("mcycleh", 0),
        ("minstreth", 0),
        ("cycle", 0),
        ("instret", 0),
        ("cycleh", 0),
        ("instreth", 0),
        ("mvendorid", 0),
        ("marchid", 0x0007_0216),  # QEMU 7.2.22's version number
        ("mimpid", 0x0007_0216),
        ("mhartid", 0),
    ],
)
def test_every_csr_reads_its_reset_value(name, value):
    assert read_csr(IMPLEMENTED[name], handler=False) == value


def test_the_identification_constants_are_the_ones_the_guest_reads():
    assert read_csr(IMPLEMENTED["marchid"]) == MARCHID_VALUE
    assert read_csr(IMPLEMENTED["mimpid"]) == MIMPID_VALUE


@pytest.mark.parametrize(
    ("name", "written", "read_back"),
    [
        ("mstatus", MASK32, 0x1888),  # only MIE (3) and MPIE (7) stick; MPP reads 3
        ("mstatus", 0x0000_0008, 0x1808),
        ("mstatus", 0x0000_0080, 0x1880),
        ("mstatus", 0x0000_1800, 0x1800),
        ("mstatus", 0x0000_0000, 0x1800),  # MPP cannot be cleared
        ("mstatus", 0x0002_0000 | 0x2 | 0x100, 0x1800),  # MPRV, SIE, SPP: read-only zero
        ("misa", 0, MISA_RV32IM),  # writes ignored
        ("misa", MASK32, MISA_RV32IM),
        ("mie", MASK32, 0x888),  # only MSIE, MTIE, MEIE
        ("mie", 0x0000_0222, 0),  # S/U bits do not exist
        ("mie", 0x0000_0008, 0x8),
        ("mtvec", RAM_BASE + 0x100, RAM_BASE + 0x100),  # direct
        ("mtvec", RAM_BASE + 0x101, RAM_BASE + 0x101),  # vectored
        ("mtvec", RAM_BASE + 0x102, 0),  # mode 2 is reserved: the write is ignored
        ("mtvec", RAM_BASE + 0x103, 0),  # mode 3 too
        ("mscratch", MASK32, MASK32),
        ("mscratch", 0x1234_5678, 0x1234_5678),
        ("mepc", MASK32, 0xFFFF_FFFC),  # IALIGN = 32: mepc[1:0] read zero
        ("mepc", RAM_BASE + 6, RAM_BASE + 4),
        ("mepc", 0x1234_5679, 0x1234_5678),
        ("mcause", MASK32, MASK32),
        ("mcause", 0x8000_0007, 0x8000_0007),
        ("mtval", MASK32, MASK32),
        ("mip", 0, MIP_MTIP),  # mip is driven by devices: guest writes are ignored
        ("mip", MASK32, MIP_MTIP),
    ],
)
def test_csr_writes_keep_only_the_writable_bits(name, written, read_back):
    assert write_then_read(IMPLEMENTED[name], written) == read_back


def test_a_reserved_mtvec_mode_leaves_the_previous_value_in_place():
    value = read_csr(
        0x305,
        prefix=[encode("csrrw", rs1=A1, csr=0x305), encode("csrrw", rs1=13, csr=0x305)],
        regs={A1: RAM_BASE + 0x201, 13: RAM_BASE + 0x402},
    )
    assert value == RAM_BASE + 0x201


@pytest.mark.parametrize("name", ["mip", "misa"])
@pytest.mark.parametrize("op", ["csrrw", "csrrs", "csrrc"])
def test_writes_to_mip_and_misa_are_ignored_rather_than_illegal(name, op):
    before = read_csr(IMPLEMENTED[name])
    ran = run_to_wfi(
        [
            encode(op, rd=A0, rs1=A1, csr=IMPLEMENTED[name]),
            encode("csrrs", rd=13, csr=IMPLEMENTED[name]),
            WFI,
        ],
        regs={A1: MASK32},
    )
    assert ran.cpu.pc == RAM_BASE + 12  # no trap
    assert ran.x(A0) == before and ran.x(13) == before


def test_mip_msip_cannot_be_set_by_a_csr_write():
    ran = run_to_wfi([encode("csrrsi", csr=0x344, imm=8), encode("csrrs", rd=A0, csr=0x344), WFI])
    assert ran.x(A0) & 0x8 == 0


# -- the three operations --------------------------------------------------------------------


def test_csrrw_returns_the_old_value_and_writes_the_new_one():
    ran = run_to_wfi(
        [encode("csrrw", rd=A0, rs1=A1, csr=0x340), encode("csrrw", rd=13, rs1=14, csr=0x340), WFI],
        regs={A1: 0x1111, 14: 0x2222},
    )
    assert ran.x(A0) == 0 and ran.x(13) == 0x1111 and ran.cpu.mscratch == 0x2222


def test_csrrw_with_rd_equal_to_rs1_swaps_register_and_csr():
    m = load_code([encode("csrrw", rd=A0, rs1=A0, csr=0x340), WFI], regs={A0: 0xAAAA})
    m.cpu.mscratch = 0x5555
    m.run(10)
    assert m.cpu.x[A0] == 0x5555 and m.cpu.mscratch == 0xAAAA


def test_csrrw_with_rd_x0_still_writes():
    ran = run_to_wfi([encode("csrrw", rd=0, rs1=A1, csr=0x340), WFI], regs={A1: 0x77})
    assert ran.cpu.mscratch == 0x77 and ran.cpu.x[0] == 0


@pytest.mark.parametrize(
    ("op", "operand", "expected"),
    [
        ("csrrs", 0x0F0F_0000, 0xFF0F_FF00),
        ("csrrc", 0xF000_0F00, 0x0F00_F000),
        ("csrrw", 0x1234_0000, 0x1234_0000),
    ],
)
def test_set_and_clear_combine_the_old_value_with_rs1(op, operand, expected):
    m = load_code([encode(op, rd=A0, rs1=A1, csr=0x340), WFI], regs={A1: operand})
    m.cpu.mscratch = 0xFF00_FF00
    m.run(10)
    assert m.cpu.x[A0] == 0xFF00_FF00
    assert m.cpu.mscratch == expected


@pytest.mark.parametrize(
    ("op", "uimm", "expected"),
    [
        ("csrrwi", 31, 0x1F),  # zero-extended: no sign extension of the 5-bit immediate
        ("csrrsi", 31, 0xFF00_FF1F),
        ("csrrci", 31, 0xFF00_FF00 & ~0x1F),
        ("csrrwi", 0, 0),
        ("csrrsi", 0, 0xFF00_FF00),
        ("csrrci", 0, 0xFF00_FF00),
        ("csrrsi", 16, 0xFF00_FF10),
    ],
)
def test_immediate_forms_use_a_zero_extended_five_bit_immediate(op, uimm, expected):
    m = load_code([encode(op, rd=A0, imm=uimm, csr=0x340), WFI])
    m.cpu.mscratch = 0xFF00_FF00
    m.run(10)
    assert m.cpu.x[A0] == 0xFF00_FF00
    assert m.cpu.mscratch == expected & MASK32


def test_csrrs_and_csrrc_with_x0_do_not_write():
    # mepc would lose bits 1:0 on any write, so a write that happened would show.
    m = load_code([encode("csrrs", rd=A0, csr=0x341), encode("csrrc", rd=A1, csr=0x341), WFI])
    m.cpu.mepc = 0x8000_0003  # host-side: bypasses the write mask
    m.run(10)
    assert m.cpu.x[A0] == m.cpu.x[A1] == 0x8000_0003
    assert m.cpu.mepc == 0x8000_0003


# -- read-only CSRs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", READ_ONLY)
@pytest.mark.parametrize(
    "word_of",
    [
        lambda n: encode("csrrs", rd=A0, rs1=0, csr=n),
        lambda n: encode("csrrc", rd=A0, rs1=0, csr=n),
        lambda n: encode("csrrsi", rd=A0, imm=0, csr=n),
        lambda n: encode("csrrci", rd=A0, imm=0, csr=n),
    ],
    ids=["csrrs-x0", "csrrc-x0", "csrrsi-0", "csrrci-0"],
)
def test_reading_a_read_only_csr_without_a_write_is_legal(name, word_of):
    ran = run_to_wfi([word_of(IMPLEMENTED[name]), WFI])
    assert ran.cpu.pc == RAM_BASE + 8
    assert ran.cpu.mcause == 0


@pytest.mark.parametrize("name", READ_ONLY)
@pytest.mark.parametrize(
    ("word_of", "a1"),
    [
        (lambda n: encode("csrrw", rd=A0, rs1=A1, csr=n), 5),
        (lambda n: encode("csrrw", rd=A0, rs1=0, csr=n), 0),  # CSRRW always writes
        (lambda n: encode("csrrw", rd=0, rs1=A1, csr=n), 5),
        (lambda n: encode("csrrwi", rd=A0, imm=0, csr=n), 0),  # so does CSRRWI, even of 0
        (lambda n: encode("csrrs", rd=A0, rs1=A1, csr=n), 0),  # rs1 != x0 writes, even 0
        (lambda n: encode("csrrc", rd=A0, rs1=A1, csr=n), 0),
        (lambda n: encode("csrrsi", rd=A0, imm=1, csr=n), 0),
        (lambda n: encode("csrrci", rd=A0, imm=1, csr=n), 0),
    ],
    ids=[
        "csrrw",
        "csrrw-x0",
        "csrrw-rd-x0",
        "csrrwi-0",
        "csrrs-zero-reg",
        "csrrc-zero-reg",
        "csrrsi-1",
        "csrrci-1",
    ],
)
def test_writing_a_read_only_csr_is_an_illegal_instruction(name, word_of, a1):
    word = word_of(IMPLEMENTED[name])
    ran = run_asm([NOP, word, WFI], regs={A0: 0xABC, A1: a1})
    assert trapped(ran)
    c = ran.cpu
    assert (c.mcause, c.mepc, c.mtval) == (Cause.ILLEGAL_INSN, RAM_BASE + 4, word)
    assert c.x[A0] == 0xABC  # rd not written
    # The faulting CSR instruction is not counted: nop + the handler's wfi.
    assert c.icount == 2 and c.retired == 2


@pytest.mark.parametrize("name", sorted(UNIMPLEMENTED))
@pytest.mark.parametrize("op", ["csrrs", "csrrw", "csrrci"])
def test_an_unimplemented_csr_is_illegal_even_to_read(name, op):
    word = encode(op, rd=A0, csr=UNIMPLEMENTED[name])
    ran = run_asm([word, WFI], regs={A0: 0x99})
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mepc, ran.cpu.mtval) == (Cause.ILLEGAL_INSN, RAM_BASE, word)
    assert ran.x(A0) == 0x99
    assert ran.cpu.icount == 1  # only the handler's wfi


@given(st.integers(0, 0xFFF).filter(lambda n: n not in CSR_NUMBERS))
def test_every_csr_number_outside_the_set_is_illegal(number):
    word = encode("csrrs", rd=A0, csr=number)
    ran = run_asm([word, WFI])
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mtval) == (Cause.ILLEGAL_INSN, word)


@given(st.sampled_from(READ_WRITE), st.integers(0, MASK32))
def test_read_write_csrs_accept_csrrw_of_any_value(name, value):
    ran = run_asm([encode("csrrw", rs1=A1, csr=IMPLEMENTED[name])], budget=1, regs={A1: value})
    assert ran.reason is StopReason.BUDGET and ran.cpu.pc == RAM_BASE + 4
    assert ran.cpu.retired == 1


# -- minstret / mcycle --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["minstret", "mcycle", "instret", "cycle"])
@pytest.mark.parametrize("before", [0, 1, 5, 70])
def test_a_counter_read_returns_the_count_before_the_reading_instruction(name, before):
    assert read_csr(IMPLEMENTED[name], prefix=[NOP] * before) == before


def test_mcycle_counts_a_trapping_ecall_and_minstret_does_not():
    ran = run_to_wfi("""
        la   t0, handler
        csrw mtvec, t0
        ecall               # counted, does not retire
        csrr a0, minstret   # la (2) + csrw retired before it, + 4 in the handler
        csrr a1, mcycle     # those 7, the ecall and the minstret read
        wfi
    handler:
        csrr t1, mepc
        addi t1, t1, 4
        csrw mepc, t1
        mret
    """)
    assert ran.x("a0") == 3 + 4
    assert ran.x("a1") == 3 + 4 + 1 + 1
    assert ran.cpu.icount == ran.cpu.mcycle64() == 3 + 1 + 4 + 2 + 1
    assert ran.cpu.minstret64() == ran.cpu.retired == ran.cpu.icount - 1


def test_an_illegal_instruction_counts_in_mcycle_but_not_minstret():
    ran = run_to_wfi([0, WFI])  # word 0 is illegal; HANDLER holds a wfi
    assert trapped(ran)
    assert ran.cpu.mcycle64() == 2 and ran.cpu.minstret64() == 1


def test_a_load_access_fault_counts_in_neither_counter():
    ran = run_asm([NOP, encode("lw", rd=A0, rs1=0), WFI])
    assert trapped(ran)
    assert ran.cpu.mcycle64() == 2 and ran.cpu.minstret64() == 2


@pytest.mark.parametrize("name", ["minstret", "mcycle"])
def test_a_counter_write_replaces_the_writing_instructions_increment(name):
    number = IMPLEMENTED[name]
    ran = run_to_wfi(
        [
            NOP,
            encode("csrrw", rd=A0, rs1=A1, csr=number),
            encode("csrrs", rd=12, csr=number),
            NOP,
            encode("csrrs", rd=13, csr=number),
            WFI,
        ],
        regs={A1: 1000},
    )
    assert ran.x(A0) == 1  # the old value
    assert ran.x(12) == 1000  # the next read sees exactly the value written
    assert ran.x(13) == 1002
    shadow = {"minstret": 0xC02, "mcycle": 0xC00}[name]
    assert read_csr(shadow, prefix=[encode("csrrw", rs1=A1, csr=number)], regs={A1: 50}) == 50


@pytest.mark.parametrize("name", ["minstret", "mcycle"])
def test_the_low_half_carries_into_the_high_half(name):
    low, high = IMPLEMENTED[name], IMPLEMENTED[name + "h"]
    ran = run_to_wfi(
        [
            encode("csrrw", rs1=A1, csr=low),  # low = 0xFFFF_FFFF after this instruction
            encode("csrrs", rd=A0, csr=high),  # 0: not yet carried
            encode("csrrs", rd=12, csr=low),  # 0: the read above made it 0x1_0000_0000
            encode("csrrs", rd=13, csr=high),  # 1
            WFI,
        ],
        regs={A1: MASK32},
    )
    assert (ran.x(A0), ran.x(12), ran.x(13)) == (0, 0, 1)


@pytest.mark.parametrize("name", ["minstret", "mcycle"])
def test_writing_the_high_half_keeps_the_low_half(name):
    low, high = IMPLEMENTED[name], IMPLEMENTED[name + "h"]
    shadow_high = {"minstret": 0xC82, "mcycle": 0xC80}[name]
    ran = run_to_wfi(
        [
            NOP,
            NOP,
            encode("csrrw", rs1=A1, csr=high),
            encode("csrrs", rd=A0, csr=high),
            encode("csrrs", rd=12, csr=low),
            encode("csrrs", rd=13, csr=shadow_high),
            WFI,
        ],
        regs={A1: 0xDEAD_BEEF},
    )
    assert ran.x(A0) == 0xDEAD_BEEF
    assert ran.x(12) == 2 + 1  # two nops; the high-half write replaced its own increment
    assert ran.x(13) == 0xDEAD_BEEF
    value = ran.cpu.minstret64() if name == "minstret" else ran.cpu.mcycle64()
    assert value == 0xDEAD_BEEF << 32 | 6  # 2 nops, 3 reads and the wfi after the write


def test_counter_values_are_sixty_four_bits_and_wrap():
    ran = run_to_wfi(
        [
            encode("csrrw", rs1=A1, csr=0xB80),  # mcycleh = all ones
            encode("csrrw", rs1=A1, csr=0xB00),  # mcycle = all ones
            NOP,
            encode("csrrs", rd=A0, csr=0xB00),
            encode("csrrs", rd=12, csr=0xB80),
            WFI,
        ],
        regs={A1: MASK32},
    )
    assert ran.x(A0) == 0 and ran.x(12) == 0


def test_the_host_counter_views_agree_with_the_csrs():
    ran = run_to_wfi("""
        li   t0, 20
    1:  addi t0, t0, -1
        bnez t0, 1b
        csrr a0, minstret
        csrr a1, mcycle
        wfi
    """)
    assert ran.x("a0") == 1 + 40
    assert ran.x("a1") == 1 + 40 + 1
    assert ran.cpu.minstret64() == ran.cpu.mcycle64() == ran.cpu.icount == 1 + 40 + 3
    for number, value in ((0xB00, 44), (0xB02, 44), (0xB80, 0), (0x300, 0x1800), (0xF11, 0)):
        assert ran.cpu.csr_read(number) == value


def test_csr_instructions_in_a_loop_see_fresh_counter_values_each_time():
    ran = run_to_wfi("""
        li   t0, 3
        li   a0, 0
    1:  csrr t1, minstret
        add  a0, a0, t1
        addi t0, t0, -1
        bnez t0, 1b
        wfi
    """)
    assert ran.x("a0") == 2 + 6 + 10


def test_the_handler_used_by_these_tests_is_a_wfi():
    m = load_code([WFI])
    assert m.bus.read(HANDLER, 4) == WFI and m.cpu.mtvec == HANDLER
    assert m.run(5).reason is StopReason.WFI_IDLE
