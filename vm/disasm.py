"""The disassembler: one instruction word to canonical GNU-style text, from the same table.

The text is canonical (no pseudo-instructions) so `vm.asm` assembles it back to the same
word: branch and jump targets print as absolute addresses when `pc` is given, else as
`.+offset`. Words that are not instructions print as `.word 0x...`.
"""

from __future__ import annotations

from vm.csr import CSR_NAMES
from vm.isa import ABI_NAMES, Fmt, Insn, decode, encode, operands

MASK32 = 0xFFFF_FFFF
_FENCE_LETTERS = "iorw"


def _fence_set(bits: int) -> str:
    text = "".join(ch for i, ch in enumerate(_FENCE_LETTERS) if bits & (8 >> i))
    return text or "0"


def disassemble(word: int, *, pc: int | None = None) -> str:
    insn = decode(word)
    if insn is None:
        return f".word {word:#010x}"
    text = _canonical_text(insn, word, pc)
    if encode(insn, operands(insn, word)) != word:
        # Fields the instruction ignores are set (fence.tso's fm, fence.i's imm): the
        # canonical text would assemble to another word, so show the word itself.
        return f".word {word:#010x}  # {text}"
    return text


def _canonical_text(insn: Insn, word: int, pc: int | None) -> str:
    ops = operands(insn, word)
    r = ABI_NAMES
    fmt = insn.fmt
    name = insn.name

    def target(offset: int) -> str:
        if pc is None:
            return f".{offset:+d}"
        return f"{(pc + offset) & MASK32:#x}"

    def csr_name(number: int) -> str:
        return CSR_NAMES.get(number, f"{number:#x}")

    if fmt is Fmt.R:
        return f"{name} {r[ops.rd]}, {r[ops.rs1]}, {r[ops.rs2]}"
    if fmt in (Fmt.I, Fmt.SHIFT):
        return f"{name} {r[ops.rd]}, {r[ops.rs1]}, {ops.imm}"
    if fmt in (Fmt.LOAD, Fmt.JALR):
        return f"{name} {r[ops.rd]}, {ops.imm}({r[ops.rs1]})"
    if fmt is Fmt.S:
        return f"{name} {r[ops.rs2]}, {ops.imm}({r[ops.rs1]})"
    if fmt is Fmt.B:
        return f"{name} {r[ops.rs1]}, {r[ops.rs2]}, {target(ops.imm)}"
    if fmt is Fmt.U:
        return f"{name} {r[ops.rd]}, {ops.imm >> 12:#x}"
    if fmt is Fmt.J:
        return f"{name} {r[ops.rd]}, {target(ops.imm)}"
    if fmt is Fmt.CSR:
        return f"{name} {r[ops.rd]}, {csr_name(ops.csr)}, {r[ops.rs1]}"
    if fmt is Fmt.CSRI:
        return f"{name} {r[ops.rd]}, {csr_name(ops.csr)}, {ops.imm}"
    if fmt is Fmt.FENCE:
        return f"{name} {_fence_set(ops.imm >> 4)}, {_fence_set(ops.imm & 0xF)}"
    return name


def disassemble_image(image: bytes, *, base: int) -> list[str]:
    """One line per word: address, word, text (for reports and `detfuzz` debugging output)."""
    lines = []
    for offset in range(0, len(image) - len(image) % 4, 4):
        word = int.from_bytes(image[offset : offset + 4], "little")
        pc = base + offset
        lines.append(f"{pc:08x}:  {word:08x}  {disassemble(word, pc=pc)}")
    return lines
