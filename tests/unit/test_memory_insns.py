"""Loads and stores: widths, sign/zero extension, alignment, RAM bounds, ROM, x0, and the
bus bookkeeping behind the translated fast path."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import StopReason
from vm.asm import encode
from vm.csr import Cause

from .helpers import (
    HANDLER,
    MASK32,
    MODES,
    RAM_BASE,
    ROM_BASE,
    SMALL_RAM,
    WFI,
    InsnRunner,
    load_code,
    run_asm,
    run_mode,
    run_to_wfi,
    trapped,
    u32,
)

A0, A1, A2 = 10, 11, 12
DATA = RAM_BASE + 0x2000  # a data page distinct from the code page
RAM_END = RAM_BASE + SMALL_RAM
PATTERN = bytes([0x81, 0x7F, 0xFE, 0x80, 0x01, 0x00, 0xFF, 0xFF, 0x34, 0x12, 0x78, 0x56])


def run_with_data(code, data: bytes = PATTERN, at: int = DATA, regs=None, mode="interpreted"):
    m = load_code(code, regs=regs)
    m.bus.write_bytes(at, data)
    result = run_mode(m, 1000, mode)
    return m, result


def ref_load(name: str, data: bytes, offset: int) -> int:
    size = {"lb": 1, "lbu": 1, "lh": 2, "lhu": 2, "lw": 4}[name]
    raw = int.from_bytes(data[offset : offset + size], "little")
    if name in ("lb", "lh") and raw >> (8 * size - 1):
        raw -= 1 << (8 * size)
    return u32(raw)


@pytest.mark.parametrize(
    ("name", "offset", "expected"),
    [
        ("lb", 0, 0xFFFF_FF81),
        ("lb", 1, 0x7F),
        ("lb", 3, 0xFFFF_FF80),
        ("lbu", 0, 0x81),
        ("lbu", 3, 0x80),
        ("lh", 0, 0x7F81),
        ("lh", 2, 0xFFFF_80FE),
        ("lh", 6, MASK32),
        ("lhu", 2, 0x80FE),
        ("lhu", 6, 0xFFFF),
        ("lw", 0, 0x80FE_7F81),
        ("lw", 4, 0xFFFF_0001),
        ("lw", 8, 0x5678_1234),
    ],
)
def test_loads_extend_as_the_spec_says(name, offset, expected):
    for mode in MODES:
        m, result = run_with_data(
            [encode(name, rd=A0, rs1=A1, imm=offset), WFI],
            regs={A1: DATA, A0: 0xDEAD_BEEF},
            mode=mode,
        )
        assert result.reason is StopReason.WFI_IDLE
        assert m.cpu.x[A0] == expected


@pytest.mark.parametrize(
    ("name", "value", "expected_bytes"),
    [
        ("sb", 0x1234_56AB, bytes([0xAB, 0xEE, 0xEE, 0xEE])),
        ("sh", 0x1234_56AB, bytes([0xAB, 0x56, 0xEE, 0xEE])),
        ("sw", 0x1234_56AB, bytes([0xAB, 0x56, 0x34, 0x12])),
        ("sb", 0xFFFF_FF80, bytes([0x80, 0xEE, 0xEE, 0xEE])),
        ("sh", 0x8000_0000, bytes([0x00, 0x00, 0xEE, 0xEE])),
    ],
)
def test_stores_write_exactly_their_width_little_endian(name, value, expected_bytes):
    for mode in MODES:
        m, _ = run_with_data(
            [encode(name, rs1=A1, rs2=A2, imm=4), WFI],
            data=b"\xee" * 12,
            regs={A1: DATA, A2: value},
            mode=mode,
        )
        assert m.bus.read_bytes(DATA, 12) == b"\xee" * 4 + expected_bytes + b"\xee" * 4


@pytest.mark.parametrize("imm", [-2048, -1, 0, 1, 2047])
@pytest.mark.parametrize("mode", MODES)
def test_the_offset_is_a_sign_extended_twelve_bit_immediate(imm, mode):
    base = DATA + 0x1000
    m, _ = run_with_data(
        [encode("sb", rs1=A1, rs2=A2, imm=imm), encode("lbu", rd=A0, rs1=A1, imm=imm), WFI],
        data=bytes(0x2000),
        at=DATA,
        regs={A1: base, A2: 0x5A},
        mode=mode,
    )
    assert m.bus.read(base + imm, 1) == 0x5A
    assert m.cpu.x[A0] == 0x5A


@pytest.mark.parametrize("mode", MODES)
def test_the_effective_address_wraps_modulo_two_to_the_thirty_two(mode):
    # 0x7FFF_FFFC + 4 = 0x8000_0000 (RAM); 0xFFFF_FFFF + 1 would be 0 (unmapped).
    m, result = run_with_data(
        [encode("lw", rd=A0, rs1=A1, imm=4), encode("lw", rd=A2, rs1=A2, imm=1)],
        regs={A1: 0x7FFF_FFFC, A2: MASK32},
        mode=mode,
    )
    assert m.cpu.x[A0] == encode("lw", rd=A0, rs1=A1, imm=4)  # read the first word of RAM
    assert result.reason is StopReason.WFI_IDLE and m.cpu.pc == HANDLER + 4
    assert m.cpu.mcause == Cause.LOAD_ACCESS_FAULT
    assert m.cpu.mtval == 0
    assert m.cpu.x[A2] == MASK32  # a faulting load does not write rd


@pytest.mark.parametrize(
    ("name", "misalignment"),
    [("lh", 1), ("lh", 3), ("lhu", 1), ("lhu", 3), ("lw", 1), ("lw", 2), ("lw", 3)],
)
def test_misaligned_loads_from_ram_complete_without_a_trap(name, misalignment):
    for mode in MODES:
        m, result = run_with_data(
            [encode(name, rd=A0, rs1=A1, imm=misalignment), WFI],
            regs={A1: DATA},
            mode=mode,
        )
        assert result.reason is StopReason.WFI_IDLE and m.cpu.pc == RAM_BASE + 8
        assert m.cpu.x[A0] == ref_load(name, PATTERN, misalignment)
        assert m.cpu.mcause == 0


@pytest.mark.parametrize(
    ("name", "size", "misalignment"),
    [("sh", 2, 1), ("sh", 2, 3), ("sw", 4, 1), ("sw", 4, 2), ("sw", 4, 3)],
)
@pytest.mark.parametrize("mode", MODES)
def test_misaligned_stores_to_ram_complete_without_a_trap(name, size, misalignment, mode):
    m, result = run_with_data(
        [encode(name, rs1=A1, rs2=A2, imm=misalignment), WFI],
        data=bytes(8),
        regs={A1: DATA, A2: 0x4433_2211},
        mode=mode,
    )
    assert result.reason is StopReason.WFI_IDLE and m.cpu.pc == RAM_BASE + 8
    expected = bytearray(8)
    expected[misalignment : misalignment + size] = bytes([0x11, 0x22, 0x33, 0x44])[:size]
    assert m.bus.read_bytes(DATA, 8) == bytes(expected)


@pytest.mark.parametrize("mode", MODES)
def test_misaligned_word_accesses_may_straddle_a_page_boundary(mode):
    boundary = DATA + 0x1000
    m, result = run_with_data(
        [
            encode("sw", rs1=A1, rs2=A2, imm=-2),
            encode("lw", rd=A0, rs1=A1, imm=-2),
            encode("lh", rd=13, rs1=A1, imm=-1),
            WFI,
        ],
        data=bytes(0x2000),
        regs={A1: boundary, A2: 0x8899_AABB},
        mode=mode,
    )
    assert result.reason is StopReason.WFI_IDLE
    assert m.bus.read_bytes(boundary - 2, 4) == bytes([0xBB, 0xAA, 0x99, 0x88])
    assert m.cpu.x[A0] == 0x8899_AABB
    assert m.cpu.x[13] == 0xFFFF_99AA


@pytest.mark.parametrize(("name", "size"), [("lb", 1), ("lh", 2), ("lw", 4)])
@pytest.mark.parametrize("mode", MODES)
def test_the_last_bytes_of_ram_are_accessible(name, size, mode):
    m, result = run_with_data(
        [encode(name, rd=A0, rs1=A1, imm=-size), WFI],
        data=b"\x11\x22\x33\x44",
        at=RAM_END - 4,
        regs={A1: RAM_END},
        mode=mode,
    )
    assert result.reason is StopReason.WFI_IDLE and m.cpu.pc == RAM_BASE + 8
    assert m.cpu.x[A0] == int.from_bytes(b"\x11\x22\x33\x44"[4 - size :], "little")


LOAD_SIZES = {"lb": 1, "lbu": 1, "lh": 2, "lhu": 2, "lw": 4}
STORE_SIZES = {"sb": 1, "sh": 2, "sw": 4}


def _qemu_fault_address(address: int, size: int) -> int:
    """A misaligned access straddling the end of RAM faults on its second aligned part, and
    QEMU reports that part's address (checked by tests/differential/test_qemu.py)."""
    if address & (size - 1) and (address + size - 1) >= RAM_END > address:
        return (address & ~(size - 1)) + size
    return address


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("lb", RAM_END),
        ("lw", RAM_END),
        ("lw", RAM_END - 2),  # straddles the end of RAM
        ("lh", RAM_END - 1),
        ("lw", 0),
        ("lbu", 0xFFF),  # just below the boot ROM
        ("lw", 0x0001_0000),  # just above it
        ("lw", RAM_BASE - 4),
        ("lw", 0xFFFF_FFFC),
        ("lhu", 0x0300_0000),
    ],
)
def test_a_load_outside_every_region_is_a_load_access_fault(name, address):
    for mode in MODES:
        ran = run_asm(
            [encode("addi", rd=13, rs1=0, imm=1), encode(name, rd=A0, rs1=A1), WFI],
            regs={A1: address, A0: 0x1234},
            mode=mode,
        )
        assert trapped(ran)
        c = ran.cpu
        expected = _qemu_fault_address(address, LOAD_SIZES[name])
        assert (c.mcause, c.mtval, c.mepc) == (Cause.LOAD_ACCESS_FAULT, expected, RAM_BASE + 4)
        assert c.x[A0] == 0x1234  # rd unchanged
        assert c.x[13] == 1  # the earlier instruction of the block completed


@pytest.mark.parametrize(
    ("name", "address"),
    [("sb", RAM_END), ("sw", RAM_END - 2), ("sh", RAM_END - 1), ("sw", 0), ("sw", RAM_BASE - 4)],
)
def test_a_store_outside_every_region_is_a_store_access_fault(name, address):
    ran = run_asm([encode(name, rs1=A1, rs2=A2), WFI], regs={A1: address, A2: 0xAB})
    assert trapped(ran)
    c = ran.cpu
    expected = _qemu_fault_address(address, STORE_SIZES[name])
    assert (c.mcause, c.mtval, c.mepc) == (Cause.STORE_ACCESS_FAULT, expected, RAM_BASE)
    assert ran.m.bus.read_bytes(RAM_END - 4, 4) == bytes(4)  # nothing partially written


def test_the_boot_rom_is_readable_by_loads():
    m = load_code(
        [encode("lw", rd=A0, rs1=A1), encode("lbu", rd=A2, rs1=A1, imm=1), WFI], regs={A1: ROM_BASE}
    )
    m.bus.rom[0:4] = (0x0000_0297).to_bytes(4, "little")
    assert m.run(10).reason is StopReason.WFI_IDLE
    assert m.cpu.x[A0] == 0x0000_0297
    assert m.cpu.x[A2] == 0x02


def test_stores_to_the_boot_rom_are_ignored_without_a_trap():
    m = load_code(
        [encode("sw", rs1=A1, rs2=A2), encode("lw", rd=A0, rs1=A1), WFI],
        regs={A1: ROM_BASE + 0x40, A2: 0x1234_5678},
    )
    assert m.run(10).reason is StopReason.WFI_IDLE
    assert m.cpu.pc == RAM_BASE + 12
    assert m.cpu.x[A0] == 0
    assert m.bus.read(ROM_BASE + 0x40, 4) == 0


@pytest.mark.parametrize("name", ["lb", "lbu", "lh", "lhu", "lw"])
def test_a_load_into_x0_is_discarded(name):
    m, result = run_with_data([encode(name, rd=0, rs1=A1), WFI], regs={A1: DATA})
    assert result.reason is StopReason.WFI_IDLE
    assert m.cpu.x[0] == 0


def test_a_load_into_x0_still_faults_on_an_unmapped_address():
    ran = run_asm([encode("lw", rd=0, rs1=A1), WFI], regs={A1: 0x10})
    assert trapped(ran)
    assert (ran.cpu.mcause, ran.cpu.mtval) == (Cause.LOAD_ACCESS_FAULT, 0x10)


def test_a_store_of_x0_writes_zeros():
    m, _ = run_with_data([encode("sw", rs1=A1, rs2=0), WFI], data=b"\xff" * 4, regs={A1: DATA})
    assert m.bus.read_bytes(DATA, 4) == bytes(4)


def test_a_load_with_rd_equal_to_rs1_uses_the_old_base():
    m, _ = run_with_data([encode("lw", rd=A1, rs1=A1, imm=8), WFI], regs={A1: DATA})
    assert m.cpu.x[A1] == 0x5678_1234


@pytest.mark.parametrize("mode", MODES)
def test_a_store_is_visible_to_a_load_later_in_the_same_block(mode):
    m, _ = run_with_data(
        [
            encode("sw", rs1=A1, rs2=A2),
            encode("sb", rs1=A1, rs2=0, imm=1),
            encode("lw", rd=A0, rs1=A1),
            encode("lh", rd=13, rs1=A1, imm=2),
            WFI,
        ],
        regs={A1: DATA, A2: 0x8765_4321},
        mode=mode,
    )
    assert m.cpu.x[A0] == 0x8765_0021
    assert m.cpu.x[13] == 0xFFFF_8765


@pytest.mark.parametrize("mode", MODES)
def test_stores_into_the_code_page_take_effect_like_any_other_store(mode):
    # The code page holds translated code, so these stores take the slow path.
    src = """
        la   a1, buf
        li   a2, 0x11223344
        sw   a2, 0(a1)
        sh   a2, 4(a1)
        sb   a2, 6(a1)
        lw   a0, 0(a1)
        lw   a3, 4(a1)
        wfi
    buf: .word 0, 0
    """
    ran = run_to_wfi(src, mode=mode)
    assert ran.x("a0") == 0x1122_3344
    assert ran.x("a3") == 0x0044_3344


def test_a_guest_store_marks_its_page_dirty_even_after_the_dirty_set_was_taken():
    m = load_code([encode("sw", rs1=A1, rs2=A2), encode("jal", imm=-4)], regs={A1: DATA, A2: 1})
    m.run(2)
    page = DATA >> 12
    assert page in m.bus.take_dirty_pages()
    assert m.bus.take_dirty_pages() == set()
    m.cpu.x[A2] = 2
    m.run(2)
    assert m.bus.take_dirty_pages() == {page}
    assert m.bus.read(DATA, 4) == 2


@functools.cache
def _load_runner(name: str, offset: int) -> InsnRunner:
    return InsnRunner(encode(name, rd=A0, rs1=A1, imm=offset))


@given(
    st.sampled_from(["lb", "lbu", "lh", "lhu", "lw"]),
    st.binary(min_size=8, max_size=8),
    st.integers(0, 3),
)
def test_loads_match_the_model_at_every_alignment(name, data, offset):
    run = _load_runner(name, offset)
    for m, _ in run.machines:
        m.bus.write_bytes(DATA, data)
    assert run({A1: DATA})[A0] == ref_load(name, data, offset)
