"""Instruction semantics as Python source templates, one per table row.

The translator (`vm.translate`) stitches these into a function per code region, with guest
registers held in locals `r1`..`r31` (x0 is the literal 0). Both the block path and the
single-step path are generated from these same templates, so they cannot disagree about
what an instruction does; they differ only in how many instructions share a frame.

Conventions inside a template: values are unsigned 32-bit ints; `{s1}`/`{s2}` are source
operands, `{d}` the destination local; signed views use the `(v ^ SB) - SB` idiom. The names
`SB`/`M` are substituted as literals, because a constant is cheaper than a global in CPython.
"""

from __future__ import annotations

import re

# Results of ALU-format instructions: `{d} = <expr>`. Keys are table mnemonics.
ALU_EXPR: dict[str, str] = {
    "lui": "{uimm}",
    "auipc": "{auipc}",
    "addi": "({s1} + {imm}) & M",
    "slti": "1 if ({s1} ^ SB) < {imm_biased} else 0",
    "sltiu": "1 if {s1} < {imm} else 0",
    "xori": "{s1} ^ {imm}",
    "ori": "{s1} | {imm}",
    "andi": "{s1} & {imm}",
    "slli": "({s1} << {imm}) & M",
    "srli": "{s1} >> {imm}",
    "srai": "((({s1} ^ SB) - SB) >> {imm}) & M",
    "add": "({s1} + {s2}) & M",
    "sub": "({s1} - {s2}) & M",
    "sll": "({s1} << ({s2} & 31)) & M",
    "slt": "1 if ({s1} ^ SB) < ({s2} ^ SB) else 0",
    "sltu": "1 if {s1} < {s2} else 0",
    "xor": "{s1} ^ {s2}",
    "srl": "{s1} >> ({s2} & 31)",
    "sra": "((({s1} ^ SB) - SB) >> ({s2} & 31)) & M",
    "or": "{s1} | {s2}",
    "and": "{s1} & {s2}",
    "mul": "({s1} * {s2}) & M",
    "mulh": "((({s1} ^ SB) - SB) * (({s2} ^ SB) - SB) >> 32) & M",
    "mulhsu": "((({s1} ^ SB) - SB) * {s2} >> 32) & M",
    "mulhu": "({s1} * {s2}) >> 32",
    # Division has four edge cases (by zero, INT_MIN / -1, signs, truncation): helpers.
    "div": "DIV({s1}, {s2})",
    "divu": "({s1} // {s2}) if {s2} else M",
    "rem": "REM({s1}, {s2})",
    "remu": "({s1} % {s2}) if {s2} else {s1}",
}

# Branch conditions over the two sources.
BRANCH_COND: dict[str, str] = {
    "beq": "{s1} == {s2}",
    "bne": "{s1} != {s2}",
    "blt": "({s1} ^ SB) < ({s2} ^ SB)",
    "bge": "({s1} ^ SB) >= ({s2} ^ SB)",
    "bltu": "{s1} < {s2}",
    "bgeu": "{s1} >= {s2}",
}

# Loads: (size in bytes, fast-path read expression of RAM offset `o`, sign bit or 0).
LOADS: dict[str, tuple[int, str, int]] = {
    "lb": (1, "RB[a - RAM_BASE]", 0x80),
    "lbu": (1, "RB[a - RAM_BASE]", 0),
    "lh": (2, "HW[(a - RAM_BASE) >> 1]", 0x8000),
    "lhu": (2, "HW[(a - RAM_BASE) >> 1]", 0),
    "lw": (4, "WD[(a - RAM_BASE) >> 2]", 0),
}

# Stores: (size in bytes, fast-path write target of RAM offset, value mask).
STORES: dict[str, tuple[int, str, int]] = {
    "sb": (1, "RB[a - RAM_BASE]", 0xFF),
    "sh": (2, "HW[(a - RAM_BASE) >> 1]", 0xFFFF),
    "sw": (4, "WD[(a - RAM_BASE) >> 2]", 0xFFFF_FFFF),
}

LITERALS = {"M": "0xFFFFFFFF", "SB": "0x80000000", "RAM_BASE": "0x80000000"}


def div_signed(a: int, b: int) -> int:
    """RISC-V DIV on unsigned 32-bit encodings: truncating, -1 on /0, INT_MIN on overflow."""
    if b == 0:
        return 0xFFFF_FFFF
    sa = (a ^ 0x8000_0000) - 0x8000_0000
    sb = (b ^ 0x8000_0000) - 0x8000_0000
    if sa == -0x8000_0000 and sb == -1:
        return a
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & 0xFFFF_FFFF


def rem_signed(a: int, b: int) -> int:
    """RISC-V REM: the sign follows the dividend; x % 0 = x; INT_MIN % -1 = 0."""
    if b == 0:
        return a
    sa = (a ^ 0x8000_0000) - 0x8000_0000
    sb = (b ^ 0x8000_0000) - 0x8000_0000
    if sa == -0x8000_0000 and sb == -1:
        return 0
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & 0xFFFF_FFFF


_LITERAL_NAMES = re.compile(r"\b(" + "|".join(LITERALS) + r")\b")


def fill(template: str, **fields: str | int) -> str:
    """Substitute operand fields and the literal names of `LITERALS` into a template."""
    return _LITERAL_NAMES.sub(lambda m: LITERALS[m.group()], template.format(**fields))
