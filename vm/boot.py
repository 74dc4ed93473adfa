"""QEMU virt's boot ROM for `-bios none`: the reset vector and the firmware-info block.

The hart resets at 0x1000 and runs six instructions before the kernel's entry point, so
instruction counts from reset agree with QEMU's. detfuzz places no device tree; a1 still
holds the address where QEMU would put one.
"""

from __future__ import annotations

import struct

ROM_BASE = 0x1000
ROM_SIZE = 0xF000
RESET_VECTOR_INSNS = 6

FW_DYNAMIC_MAGIC = 0x4942_534F  # "OSBI"
FW_DYNAMIC_VERSION = 2
FW_DYNAMIC_NEXT_MODE_S = 1
_TWO_MIB = 2 << 20
_THREE_GIB = 3 << 30
_FDT_SIZE = 1 << 20


def fdt_address(ram_end: int) -> int:
    """Where QEMU 7.2 loads the device tree: align_down(top - fdt size, 2 MiB).

    RAM starts below 3 GiB on virt, so QEMU caps the top there for 32-bit reachability, and
    virt's device tree is not packed: its size is libfdt's 1 MiB buffer.
    """
    top = min(ram_end, _THREE_GIB)
    return (top - _FDT_SIZE) & ~(_TWO_MIB - 1)


def reset_vector(*, entry: int, ram_end: int) -> bytes:
    """The ROM contents QEMU writes for RV32 (riscv_setup_rom_reset_vec + fw_dynamic_info)."""
    words = (
        0x0000_0297,  # 1: auipc t0, %pcrel_hi(fw_dyn)
        0x0282_8613,  #    addi  a2, t0, %pcrel_lo(1b)
        0xF140_2573,  #    csrr  a0, mhartid
        0x0202_A583,  #    lw    a1, 32(t0)
        0x0182_A283,  #    lw    t0, 24(t0)
        0x0002_8067,  #    jr    t0
        entry,  # start: .dword
        0,
        fdt_address(ram_end),  # fdt_laddr: .dword
        0,
    )
    fw_dynamic_info = (
        FW_DYNAMIC_MAGIC,
        FW_DYNAMIC_VERSION,
        entry,  # next_addr
        FW_DYNAMIC_NEXT_MODE_S,
        0,  # options
        0,  # boot_hart
    )
    return struct.pack("<16I", *words, *fw_dynamic_info)
