"""The RV32IM + Zicsr + Zifencei instruction table, pure field extractors and the decoder.

One table (`INSNS`) feeds everything that knows about instructions: the decoder, the
translator's semantics (`vm.semantics`), the assembler (`vm.asm`), the disassembler
(`vm.disasm`) and the program generator of the fuzzer. Adding an instruction means adding one
row here and one template in `vm.semantics`; a meta-test checks that both agree and that no
two encodings overlap.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

MASK32 = 0xFFFF_FFFF


class Fmt(enum.Enum):
    """Encoding format: which fields an instruction carries and how its immediate is laid out."""

    R = "R"  # rd, rs1, rs2
    I = "I"  # rd, rs1, imm12
    SHIFT = "SHIFT"  # rd, rs1, shamt5
    LOAD = "LOAD"  # rd, imm12(rs1)
    S = "S"  # rs2, imm12(rs1)
    B = "B"  # rs1, rs2, pc-relative 13-bit offset
    U = "U"  # rd, imm20 (upper)
    J = "J"  # rd, pc-relative 21-bit offset
    JALR = "JALR"  # rd, imm12(rs1)
    CSR = "CSR"  # rd, csr, rs1
    CSRI = "CSRI"  # rd, csr, uimm5
    FENCE = "FENCE"  # pred, succ (other fields ignored, as QEMU decodes it)
    NONE = "NONE"  # no operands (ecall, ebreak, mret, wfi, fence.i)


class Kind(enum.Enum):
    """What an instruction does to control flow and memory; the translator keys on it."""

    ALU = "alu"
    LOAD = "load"
    STORE = "store"
    BRANCH = "branch"
    JUMP = "jump"
    CSR = "csr"
    SYSTEM = "system"  # ends a block: traps, mret, wfi, fence.i
    FENCE = "fence"


@dataclass(frozen=True, slots=True)
class Insn:
    """One row of the instruction table: `word & mask == match` identifies the instruction."""

    name: str
    match: int
    mask: int
    fmt: Fmt
    kind: Kind
    extension: str


_OPC_MASK = 0x7F
_F3_MASK = 0x707F
_F7_MASK = 0xFE00707F


def _r(name: str, f7: int, f3: int, ext: str = "I") -> Insn:
    return Insn(name, (f7 << 25) | (f3 << 12) | 0x33, _F7_MASK, Fmt.R, Kind.ALU, ext)


def _i(name: str, f3: int) -> Insn:
    return Insn(name, (f3 << 12) | 0x13, _F3_MASK, Fmt.I, Kind.ALU, "I")


def _shift(name: str, f7: int, f3: int) -> Insn:
    # On RV32 shamt[5] (bit 25) is part of funct7 and must be zero: mask it in.
    return Insn(name, (f7 << 25) | (f3 << 12) | 0x13, _F7_MASK, Fmt.SHIFT, Kind.ALU, "I")


def _load(name: str, f3: int) -> Insn:
    return Insn(name, (f3 << 12) | 0x03, _F3_MASK, Fmt.LOAD, Kind.LOAD, "I")


def _store(name: str, f3: int) -> Insn:
    return Insn(name, (f3 << 12) | 0x23, _F3_MASK, Fmt.S, Kind.STORE, "I")


def _branch(name: str, f3: int) -> Insn:
    return Insn(name, (f3 << 12) | 0x63, _F3_MASK, Fmt.B, Kind.BRANCH, "I")


def _csr(name: str, f3: int, fmt: Fmt) -> Insn:
    return Insn(name, (f3 << 12) | 0x73, _F3_MASK, fmt, Kind.CSR, "Zicsr")


def _exact(name: str, word: int, kind: Kind, ext: str = "I") -> Insn:
    return Insn(name, word, MASK32, Fmt.NONE, kind, ext)


INSNS: tuple[Insn, ...] = (
    Insn("lui", 0x37, _OPC_MASK, Fmt.U, Kind.ALU, "I"),
    Insn("auipc", 0x17, _OPC_MASK, Fmt.U, Kind.ALU, "I"),
    Insn("jal", 0x6F, _OPC_MASK, Fmt.J, Kind.JUMP, "I"),
    Insn("jalr", 0x67, _F3_MASK, Fmt.JALR, Kind.JUMP, "I"),
    _branch("beq", 0),
    _branch("bne", 1),
    _branch("blt", 4),
    _branch("bge", 5),
    _branch("bltu", 6),
    _branch("bgeu", 7),
    _load("lb", 0),
    _load("lh", 1),
    _load("lw", 2),
    _load("lbu", 4),
    _load("lhu", 5),
    _store("sb", 0),
    _store("sh", 1),
    _store("sw", 2),
    _i("addi", 0),
    _i("slti", 2),
    _i("sltiu", 3),
    _i("xori", 4),
    _i("ori", 6),
    _i("andi", 7),
    _shift("slli", 0x00, 1),
    _shift("srli", 0x00, 5),
    _shift("srai", 0x20, 5),
    _r("add", 0x00, 0),
    _r("sub", 0x20, 0),
    _r("sll", 0x00, 1),
    _r("slt", 0x00, 2),
    _r("sltu", 0x00, 3),
    _r("xor", 0x00, 4),
    _r("srl", 0x00, 5),
    _r("sra", 0x20, 5),
    _r("or", 0x00, 6),
    _r("and", 0x00, 7),
    Insn("fence", 0x0F, _F3_MASK, Fmt.FENCE, Kind.FENCE, "I"),
    Insn("fence.i", 0x100F, _F3_MASK, Fmt.NONE, Kind.SYSTEM, "Zifencei"),
    _exact("ecall", 0x0000_0073, Kind.SYSTEM),
    _exact("ebreak", 0x0010_0073, Kind.SYSTEM),
    _exact("mret", 0x3020_0073, Kind.SYSTEM, "Priv"),
    _exact("wfi", 0x1050_0073, Kind.SYSTEM, "Priv"),
    _csr("csrrw", 1, Fmt.CSR),
    _csr("csrrs", 2, Fmt.CSR),
    _csr("csrrc", 3, Fmt.CSR),
    _csr("csrrwi", 5, Fmt.CSRI),
    _csr("csrrsi", 6, Fmt.CSRI),
    _csr("csrrci", 7, Fmt.CSRI),
    _r("mul", 0x01, 0, "M"),
    _r("mulh", 0x01, 1, "M"),
    _r("mulhsu", 0x01, 2, "M"),
    _r("mulhu", 0x01, 3, "M"),
    _r("div", 0x01, 4, "M"),
    _r("divu", 0x01, 5, "M"),
    _r("rem", 0x01, 6, "M"),
    _r("remu", 0x01, 7, "M"),
)

BY_NAME: dict[str, Insn] = {insn.name: insn for insn in INSNS}

# Instructions after which a basic block ends: control transfers, traps, CSR accesses (which
# may enable an interrupt) and the system instructions.
ENDS_BLOCK: frozenset[Kind] = frozenset({Kind.BRANCH, Kind.JUMP, Kind.SYSTEM, Kind.CSR})
ENDS_BLOCK_NAMES: frozenset[str] = frozenset(i.name for i in INSNS if i.kind in ENDS_BLOCK)

# Register ABI names, index = register number.
ABI_NAMES: tuple[str, ...] = (
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2",
    "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
    "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7",
    "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6",
)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Pure field extractors (word -> field). Immediates come back sign-extended as Python ints.


def opcode(word: int) -> int:
    return word & 0x7F


def rd(word: int) -> int:
    return (word >> 7) & 0x1F


def rs1(word: int) -> int:
    return (word >> 15) & 0x1F


def rs2(word: int) -> int:
    return (word >> 20) & 0x1F


def funct3(word: int) -> int:
    return (word >> 12) & 0x7


def csr_number(word: int) -> int:
    return word >> 20


def sign_extend(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def imm_i(word: int) -> int:
    return sign_extend(word >> 20, 12)


def imm_s(word: int) -> int:
    return sign_extend(((word >> 25) << 5) | ((word >> 7) & 0x1F), 12)


def imm_b(word: int) -> int:
    value = (
        ((word >> 31) & 1) << 12
        | ((word >> 7) & 1) << 11
        | ((word >> 25) & 0x3F) << 5
        | ((word >> 8) & 0xF) << 1
    )
    return sign_extend(value, 13)


def imm_u(word: int) -> int:
    """The U immediate as the 32-bit value it contributes (low 12 bits zero), unsigned."""
    return word & 0xFFFF_F000


def imm_j(word: int) -> int:
    value = (
        ((word >> 31) & 1) << 20
        | ((word >> 12) & 0xFF) << 12
        | ((word >> 20) & 1) << 11
        | ((word >> 21) & 0x3FF) << 1
    )
    return sign_extend(value, 21)


def illegal_tval(word: int) -> int:
    """mtval for an illegal instruction: its bits, as long as the length encoding says.

    Low bits other than 0b11 mark a 16-bit instruction (C is absent, so it is illegal), and
    the spec and QEMU then report only those 16 bits.
    """
    return word if word & 3 == 3 else word & 0xFFFF


def shamt(word: int) -> int:
    return (word >> 20) & 0x1F


# ---------------------------------------------------------------------------------------
# Field packers (the inverses of the extractors above), used by the encoder.


def pack_i(imm: int) -> int:
    return (imm & 0xFFF) << 20


def pack_s(imm: int) -> int:
    return ((imm >> 5) & 0x7F) << 25 | (imm & 0x1F) << 7


def pack_b(imm: int) -> int:
    return (
        ((imm >> 12) & 1) << 31
        | ((imm >> 5) & 0x3F) << 25
        | ((imm >> 1) & 0xF) << 8
        | ((imm >> 11) & 1) << 7
    )


def pack_j(imm: int) -> int:
    return (
        ((imm >> 20) & 1) << 31
        | ((imm >> 1) & 0x3FF) << 21
        | ((imm >> 11) & 1) << 20
        | ((imm >> 12) & 0xFF) << 12
    )


# ---------------------------------------------------------------------------------------
# Decoding


def _candidates_by_opcode() -> dict[int, tuple[Insn, ...]]:
    table: dict[int, list[Insn]] = {}
    for insn in INSNS:
        table.setdefault(insn.match & 0x7F, []).append(insn)
    # Most specific encodings first, so an exact-match row (ecall) wins over a pattern.
    return {
        op: tuple(sorted(rows, key=lambda i: -bin(i.mask).count("1"))) for op, rows in table.items()
    }


_BY_OPCODE = _candidates_by_opcode()


@lru_cache(maxsize=1 << 16)
def decode(word: int) -> Insn | None:
    """The table row for `word`, or None if the word is not a supported instruction."""
    for insn in _BY_OPCODE.get(word & 0x7F, ()):
        if word & insn.mask == insn.match:
            return insn
    return None


class Operands(NamedTuple):
    """The decoded fields of one instruction; unused fields are zero."""

    rd: int = 0
    rs1: int = 0
    rs2: int = 0
    imm: int = 0
    csr: int = 0


def operands(insn: Insn, word: int) -> Operands:
    """Extract the fields `insn`'s format carries from `word` (pure)."""
    fmt = insn.fmt
    if fmt is Fmt.R:
        return Operands(rd=rd(word), rs1=rs1(word), rs2=rs2(word))
    if fmt in (Fmt.I, Fmt.LOAD, Fmt.JALR):
        return Operands(rd=rd(word), rs1=rs1(word), imm=imm_i(word))
    if fmt is Fmt.SHIFT:
        return Operands(rd=rd(word), rs1=rs1(word), imm=shamt(word))
    if fmt is Fmt.S:
        return Operands(rs1=rs1(word), rs2=rs2(word), imm=imm_s(word))
    if fmt is Fmt.B:
        return Operands(rs1=rs1(word), rs2=rs2(word), imm=imm_b(word))
    if fmt is Fmt.U:
        return Operands(rd=rd(word), imm=imm_u(word))
    if fmt is Fmt.J:
        return Operands(rd=rd(word), imm=imm_j(word))
    if fmt is Fmt.CSR:
        return Operands(rd=rd(word), rs1=rs1(word), csr=csr_number(word))
    if fmt is Fmt.CSRI:
        # The 5-bit zero-extended immediate lives in the rs1 field.
        return Operands(rd=rd(word), imm=rs1(word), csr=csr_number(word))
    if fmt is Fmt.FENCE:
        return Operands(imm=(word >> 20) & 0xFF)
    return Operands()


def encode(insn: Insn, ops: Operands) -> int:
    """Pack `ops` into `insn`'s encoding; the inverse of `operands` for valid fields."""
    word = insn.match
    fmt = insn.fmt
    if fmt is Fmt.R:
        return word | ops.rd << 7 | ops.rs1 << 15 | ops.rs2 << 20
    if fmt in (Fmt.I, Fmt.LOAD, Fmt.JALR):
        return word | ops.rd << 7 | ops.rs1 << 15 | pack_i(ops.imm)
    if fmt is Fmt.SHIFT:
        return word | ops.rd << 7 | ops.rs1 << 15 | (ops.imm & 0x1F) << 20
    if fmt is Fmt.S:
        return word | ops.rs1 << 15 | ops.rs2 << 20 | pack_s(ops.imm)
    if fmt is Fmt.B:
        return word | ops.rs1 << 15 | ops.rs2 << 20 | pack_b(ops.imm)
    if fmt is Fmt.U:
        return word | ops.rd << 7 | (ops.imm & 0xFFFF_F000)
    if fmt is Fmt.J:
        return word | ops.rd << 7 | pack_j(ops.imm)
    if fmt is Fmt.CSR:
        return word | ops.rd << 7 | ops.rs1 << 15 | (ops.csr & 0xFFF) << 20
    if fmt is Fmt.CSRI:
        return word | ops.rd << 7 | (ops.imm & 0x1F) << 15 | (ops.csr & 0xFFF) << 20
    if fmt is Fmt.FENCE:
        return word | (ops.imm & 0xFF) << 20
    return word
