"""Loading ELF32 and flat binaries as QEMU's -kernel does with -bios none, and the boot
through QEMU's reset vector and fw_dynamic info at 0x1000."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import Machine, MachineConfig, StopReason
from vm.asm import assemble, encode
from vm.boot import RESET_VECTOR_INSNS, fdt_address, reset_vector
from vm.loader import LoadError, load_program

from .helpers import RAM_BASE, ROM_BASE, SMALL_RAM, WFI, new_machine, words_to_bytes

PT_LOAD, PT_NOTE, PT_PHDR = 1, 4, 6
EHDR = struct.Struct("<16sHHIIIIIHHHHHH")
PHDR = struct.Struct("<IIIIIIII")


def make_elf(
    segments: list[tuple[int, int, bytes, int]],
    entry: int = RAM_BASE,
    *,
    ei_class: int = 1,
    ei_data: int = 1,
    e_type: int = 2,
    e_machine: int = 243,
    phentsize: int = 32,
    p_types: list[int] | None = None,
    vaddr_delta: int = 0,
) -> bytes:
    """An ELF32 executable: segments are (paddr, memsz, file bytes, flags)."""
    ident = b"\x7fELF" + bytes([ei_class, ei_data, 1, 0]) + bytes(8)
    phoff = EHDR.size
    data_off = phoff + PHDR.size * len(segments)
    phdrs, blobs = b"", b""
    for index, (paddr, memsz, blob, flags) in enumerate(segments):
        p_type = (p_types or [PT_LOAD] * len(segments))[index]
        offset = data_off + len(blobs)
        phdrs += PHDR.pack(p_type, offset, paddr + vaddr_delta, paddr, len(blob), memsz, flags, 4)
        blobs += blob
    ehdr = EHDR.pack(
        ident,
        e_type,
        e_machine,
        1,
        entry,
        phoff,
        0,
        0,
        EHDR.size,
        phentsize,
        len(segments),
        40,
        0,
        0,
    )
    return ehdr + phdrs + blobs


PROGRAM = assemble("""
    li   a3, 7
    li   t0, 0x100000
    li   t1, 0x5555
    sw   t1, 0(t0)
""")


def booted(data: bytes, ram_size: int = SMALL_RAM) -> Machine:
    m = Machine(MachineConfig(ram_size=ram_size))
    load_program(m, data)
    return m


# -- ELF ---------------------------------------------------------------------------------------


def test_an_elf_segment_is_loaded_and_the_hart_boots_into_its_entry():
    m = booted(make_elf([(RAM_BASE, len(PROGRAM), PROGRAM, 5)]))
    assert m.cpu.pc == ROM_BASE
    assert m.bus.read_bytes(RAM_BASE, len(PROGRAM)) == PROGRAM
    result = m.run(100)
    assert result.reason is StopReason.FINISHER_PASS
    assert result.executed == RESET_VECTOR_INSNS + 5  # li 0x5555 is lui + addi
    assert m.cpu.x[13] == 7


def test_load_program_returns_the_entry_point():
    data = make_elf([(RAM_BASE, 0x100, bytes(0x100), 5)], entry=RAM_BASE + 0x40)
    assert load_program(new_machine(), data) == RAM_BASE + 0x40


def test_segments_go_to_their_physical_not_virtual_addresses():
    blob = b"\x11\x22\x33\x44"
    m = booted(make_elf([(RAM_BASE + 0x2000, 4, blob, 6)], vaddr_delta=0x1000_0000))
    assert m.bus.read_bytes(RAM_BASE + 0x2000, 4) == blob


def test_the_reset_vector_jumps_to_an_entry_that_is_not_the_start_of_ram():
    code = words_to_bytes([encode("addi", rd=10, imm=99), WFI])
    entry = RAM_BASE + 0x3000
    m = booted(make_elf([(RAM_BASE, 4, b"\0\0\0\0", 5), (entry, len(code), code, 5)], entry=entry))
    result = m.run(RESET_VECTOR_INSNS)
    assert result.reason is StopReason.BUDGET and m.cpu.pc == entry
    assert m.run(10).reason is StopReason.WFI_IDLE and m.cpu.x[10] == 99


def test_bss_beyond_the_file_bytes_is_zeroed_even_over_earlier_segments():
    filler = b"\xff" * 0x100
    m = booted(make_elf([(RAM_BASE, 0x100, filler, 6), (RAM_BASE + 0x10, 0x80, b"\xaa" * 4, 6)]))
    assert m.bus.read_bytes(RAM_BASE, 0x10) == b"\xff" * 0x10
    assert m.bus.read_bytes(RAM_BASE + 0x10, 4) == b"\xaa" * 4
    assert m.bus.read_bytes(RAM_BASE + 0x14, 0x7C) == bytes(0x7C)
    assert m.bus.read_bytes(RAM_BASE + 0x90, 0x70) == b"\xff" * 0x70


def test_non_load_and_empty_segments_are_skipped():
    data = make_elf(
        [(RAM_BASE, len(PROGRAM), PROGRAM, 5), (0x1234_0000, 8, b"x" * 8, 4), (0x10, 0, b"", 4)],
        p_types=[PT_LOAD, PT_NOTE, PT_LOAD],
    )
    m = booted(data)
    assert m.run(100).reason is StopReason.FINISHER_PASS


def test_a_segment_may_fill_ram_to_its_last_byte():
    data = make_elf([(RAM_BASE + SMALL_RAM - 8, 8, b"12345678", 6), (RAM_BASE, 4, b"\0" * 4, 5)])
    m = booted(data)
    assert m.bus.read_bytes(RAM_BASE + SMALL_RAM - 8, 8) == b"12345678"


def test_an_elf_built_by_gnu_ld_loads_and_runs():
    import subprocess
    import tempfile
    from pathlib import Path

    from conftest import require_tool

    require_tool("riscv64-unknown-elf-as")
    require_tool("riscv64-unknown-elf-ld")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "p.S")
        src.write_text(
            ".globl _start\n_start:\n li a0, 5\n li t0, 0x100000\n li t1, 0x5555\n"
            " sw t1, 0(t0)\n.data\nv: .word 1\n.bss\nb: .space 64\n"
        )
        subprocess.run(
            [
                "riscv64-unknown-elf-as",
                "-march=rv32im_zicsr",
                "-mabi=ilp32",
                str(src),
                "-o",
                f"{tmp}/p.o",
            ],
            check=True,
        )
        subprocess.run(
            [
                "riscv64-unknown-elf-ld",
                "-N",
                "-m",
                "elf32lriscv",
                "-Ttext=0x80000000",
                f"{tmp}/p.o",
                "-o",
                f"{tmp}/p.elf",
            ],
            check=True,
            capture_output=True,
        )
        data = Path(tmp, "p.elf").read_bytes()
    m = booted(data)
    result = m.run(100)
    assert result.reason is StopReason.FINISHER_PASS and m.cpu.x[10] == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x7fELF", "truncated"),
        (b"\x7fELF" + bytes(40), "truncated"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)], ei_class=2), "32-bit"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)], ei_data=2), "little-endian"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)], e_machine=62), "RISC-V"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)], e_machine=0), "RISC-V"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)], e_type=3), "executable"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)], e_type=1), "executable"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)], phentsize=56), "program headers"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)])[:60], "program headers"),
        (make_elf([(RAM_BASE, 64, b"a" * 64, 5)])[:-10], "segment 0"),
        (make_elf([(RAM_BASE, 2, b"abcd", 5)]), "segment 0"),  # filesz > memsz
        (make_elf([(RAM_BASE - 4, 8, b"abcdefgh", 5)]), "does not fit in RAM"),
        (make_elf([(RAM_BASE + SMALL_RAM - 4, 8, b"abcdefgh", 5)]), "does not fit in RAM"),
        (make_elf([(0x1000, 4, b"abcd", 5)]), "does not fit in RAM"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5), (0x2000_0000, 16, b"", 6)]), "segment 1"),
        (make_elf([]), "no loadable segments"),
        (make_elf([(RAM_BASE, 4, b"abcd", 5)], p_types=[PT_NOTE]), "no loadable segments"),
    ],
    ids=[
        "magic-only",
        "short-header",
        "elf64",
        "big-endian",
        "x86-64",
        "no-machine",
        "ET_DYN",
        "ET_REL",
        "bad-phentsize",
        "phdrs-truncated",
        "segment-truncated",
        "filesz>memsz",
        "below-ram",
        "past-ram-end",
        "in-rom",
        "second-segment",
        "no-segments",
        "only-note",
    ],
)
def test_a_bad_elf_raises_load_error_with_one_line(data, message):
    with pytest.raises(LoadError) as info:
        load_program(new_machine(), data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_load_error_is_a_value_error():
    assert issubclass(LoadError, ValueError)


@given(st.binary(max_size=200))
def test_garbage_after_the_elf_magic_loads_or_raises_load_error(tail):
    with contextlib.suppress(LoadError):
        load_program(new_machine(), b"\x7fELF" + tail)


@given(st.data())
def test_a_corrupted_valid_elf_loads_or_raises_load_error(data):
    elf = bytearray(
        make_elf([(RAM_BASE, len(PROGRAM), PROGRAM, 5), (RAM_BASE + 0x100, 64, b"d" * 8, 6)])
    )
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.integers(4, len(elf) - 1))
        elf[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(4, len(elf)))
    with contextlib.suppress(LoadError):
        load_program(new_machine(), bytes(elf[:cut]))


# -- flat binaries --------------------------------------------------------------------------


def test_a_flat_binary_is_loaded_at_the_start_of_ram_and_booted():
    m = booted(PROGRAM)
    assert m.bus.read_bytes(RAM_BASE, len(PROGRAM)) == PROGRAM
    result = m.run(100)
    assert result.reason is StopReason.FINISHER_PASS
    assert result.executed == RESET_VECTOR_INSNS + 5


def test_a_flat_binary_of_odd_length_is_loaded_as_is():
    m = booted(PROGRAM + b"\x01\x02\x03")
    assert m.bus.read_bytes(RAM_BASE + len(PROGRAM), 4) == b"\x01\x02\x03\x00"


def test_a_short_file_that_is_not_quite_elf_is_a_flat_binary():
    assert load_program(new_machine(), b"\x7fEL") == RAM_BASE


def test_an_empty_program_is_a_load_error():
    with pytest.raises(LoadError):
        load_program(new_machine(), b"")


def test_a_flat_binary_larger_than_ram_is_a_load_error():
    with pytest.raises(LoadError, match="larger than RAM"):
        load_program(new_machine(ram_size=8192), bytes(8193))


def test_a_flat_binary_exactly_the_size_of_ram_loads():
    assert load_program(new_machine(ram_size=8192), b"\x13" + bytes(8191)) == RAM_BASE


# -- the reset vector ---------------------------------------------------------------------------


def test_the_reset_vector_sets_a0_a1_a2_and_t0_after_six_instructions():
    m = booted(PROGRAM, ram_size=8 << 20)
    result = m.run(6)
    assert result.reason is StopReason.BUDGET and m.cpu.pc == RAM_BASE
    x = m.cpu.x
    assert x[10] == 0  # a0 = mhartid
    assert x[11] == 0x8060_0000  # a1 = where QEMU puts the device tree for 8 MiB
    assert x[12] == 0x1028  # a2 = fw_dynamic info
    assert x[5] == RAM_BASE  # t0 = the entry it jumped through
    assert m.cpu.icount == m.cpu.retired == 6


def test_the_rom_holds_qemus_reset_vector_and_fw_dynamic_info():
    m = booted(PROGRAM, ram_size=8 << 20)
    words = [m.bus.read(ROM_BASE + 4 * i, 4) for i in range(16)]
    assert words[:6] == [
        0x0000_0297,
        0x0282_8613,
        0xF140_2573,
        0x0202_A583,
        0x0182_A283,
        0x0002_8067,
    ]
    assert words[6:10] == [RAM_BASE, 0, 0x8060_0000, 0]
    # fw_dynamic_info (RV32): magic "OSBI", version 2, next_addr, next_mode S, options, hart
    assert words[10:16] == [0x4942_534F, 2, RAM_BASE, 1, 0, 0]


def test_the_guest_can_read_the_fw_dynamic_info_through_a2():
    code = assemble("""
        lw   s0, 0(a2)
        lw   s1, 8(a2)
        wfi
    """)
    m = booted(code)
    assert m.run(100).reason is StopReason.WFI_IDLE
    assert m.cpu.x[8] == 0x4942_534F and m.cpu.x[9] == RAM_BASE


def test_reset_vector_bytes_match_what_the_machine_installs():
    rom = reset_vector(entry=RAM_BASE + 0x40, ram_end=RAM_BASE + (8 << 20))
    m = new_machine(ram_size=8 << 20)
    m.boot(RAM_BASE + 0x40)
    assert bytes(m.bus.rom[: len(rom)]) == rom
    assert len(rom) == 64 and m.cpu.pc == ROM_BASE


# Observed with the reference `qemu-system-riscv32 -M virt -bios none -m SIZE -kernel ...`
# (QEMU 7.2.22): a1 at the kernel entry, keyed by the `-m` argument. QEMU rounds `-m` up to
# 8 KiB (5116K is a 5120K machine) and puts its unpacked 1 MiB device tree at
# ALIGN_DOWN(ram_end - 1 MiB, 2 MiB); detfuzz takes RAM sizes in the same 8 KiB steps.
QEMU_FDT_ADDRESSES_BY_M = {
    3 << 20: 0x8020_0000,
    3076 << 10: 0x8020_0000,
    4100 << 10: 0x8020_0000,
    4608 << 10: 0x8020_0000,
    4864 << 10: 0x8020_0000,
    5 << 20: 0x8040_0000,
    5112 << 10: 0x8020_0000,
    5116 << 10: 0x8040_0000,
    6148 << 10: 0x8040_0000,
    7172 << 10: 0x8060_0000,
    8 << 20: 0x8060_0000,
    9 << 20: 0x8080_0000,
    12292 << 10: 0x80A0_0000,
    16 << 20: 0x80E0_0000,
}


def _qemu_ram_size(m_argument: int) -> int:
    return -(-m_argument // (8 << 10)) * (8 << 10)


@pytest.mark.parametrize(
    ("ram_size", "address"),
    sorted(QEMU_FDT_ADDRESSES_BY_M.items()),
    ids=[f"{size >> 10}K" for size in sorted(QEMU_FDT_ADDRESSES_BY_M)],
)
def test_a1_holds_the_device_tree_address_qemu_uses(ram_size, address):
    m = booted(PROGRAM, ram_size=_qemu_ram_size(ram_size))
    m.run(RESET_VECTOR_INSNS)
    assert m.cpu.x[11] == address, f"{m.cpu.x[11]:#x} != QEMU's {address:#x}"


def test_the_device_tree_address_is_capped_below_three_gib():
    assert fdt_address(RAM_BASE + (2 << 30)) == 0xBFE0_0000  # 2 GiB of RAM ends at 4 GiB
    assert fdt_address(0xC000_0000) == 0xBFE0_0000
    assert fdt_address(0x8080_0000) == 0x8060_0000


def test_an_entry_point_outside_ram_ends_in_a_fault_loop_after_the_reset_vector():
    data = make_elf([(RAM_BASE, 4, b"\0\0\0\0", 5)], entry=0x0002_0000)
    m = booted(data)
    result = m.run(1000)
    assert result.reason is StopReason.FAULT_LOOP
    assert result.executed == RESET_VECTOR_INSNS
