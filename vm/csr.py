"""Control and status registers: numbers, names and who may write them.

detfuzz implements exactly the machine-mode CSRs listed in `CSRS`; any other number traps
as an illegal instruction, and so does a write to a CSR whose number encodes read-only
(bits 11:10 == 0b11, the spec's convention, which covers mvendorid..mhartid and the
cycle/instret shadows).
"""

from __future__ import annotations

import enum

MSTATUS_MIE = 1 << 3
MSTATUS_MPIE = 1 << 7
MSTATUS_MPP_M = 3 << 11
# Only MIE and MPIE are writable on an M-only hart; MPP is hard-wired to M (see README).
MSTATUS_WRITABLE = MSTATUS_MIE | MSTATUS_MPIE

MIP_MSIP = 1 << 3
MIP_MTIP = 1 << 7
MIP_MEIP = 1 << 11
# Machine-level interrupts, the only ones an M-only hart has.
MIE_WRITABLE = MIP_MSIP | MIP_MTIP | MIP_MEIP

# misa: MXL=1 (RV32) in bits 31:30, extensions I (bit 8) and M (bit 12).
MISA_VALUE = (1 << 30) | (1 << (ord("I") - ord("A"))) | (1 << (ord("M") - ord("A")))

# The identification registers as the reference QEMU (7.2.22) reports them: no vendor,
# marchid and mimpid both encode QEMU's version (major << 16 | minor << 8 | micro).
MVENDORID_VALUE = 0
MARCHID_VALUE = 0x0007_0216
MIMPID_VALUE = 0x0007_0216
MHARTID_VALUE = 0


class Csr(enum.IntEnum):
    """The CSR numbers detfuzz implements."""

    MSTATUS = 0x300
    MISA = 0x301
    MIE = 0x304
    MTVEC = 0x305
    MSCRATCH = 0x340
    MEPC = 0x341
    MCAUSE = 0x342
    MTVAL = 0x343
    MIP = 0x344
    MCYCLE = 0xB00
    MINSTRET = 0xB02
    MCYCLEH = 0xB80
    MINSTRETH = 0xB82
    CYCLE = 0xC00
    INSTRET = 0xC02
    CYCLEH = 0xC80
    INSTRETH = 0xC82
    MVENDORID = 0xF11
    MARCHID = 0xF12
    MIMPID = 0xF13
    MHARTID = 0xF14


CSR_NUMBERS: frozenset[int] = frozenset(int(c) for c in Csr)
CSR_NAMES: dict[int, str] = {int(c): c.name.lower() for c in Csr}
CSR_BY_NAME: dict[str, int] = {c.name.lower(): int(c) for c in Csr}


def is_read_only(number: int) -> bool:
    """The spec's encoding convention: CSR numbers 0xC00-0xFFF (bits 11:10 == 11) are read-only."""
    return (number >> 10) & 3 == 3


class Cause(enum.IntEnum):
    """Exception codes (mcause with the interrupt bit clear)."""

    INSN_ADDR_MISALIGNED = 0
    INSN_ACCESS_FAULT = 1
    ILLEGAL_INSN = 2
    BREAKPOINT = 3
    LOAD_ADDR_MISALIGNED = 4
    LOAD_ACCESS_FAULT = 5
    STORE_ADDR_MISALIGNED = 6
    STORE_ACCESS_FAULT = 7
    ECALL_M = 11


class Interrupt(enum.IntEnum):
    """Interrupt codes (mcause with the interrupt bit set); bit `code` of mip/mie."""

    MSI = 3
    MTI = 7
    MEI = 11


# The spec's priority among machine interrupts: external, then software, then timer.
INTERRUPT_PRIORITY: tuple[Interrupt, ...] = (Interrupt.MEI, Interrupt.MSI, Interrupt.MTI)

MCAUSE_INTERRUPT = 1 << 31
