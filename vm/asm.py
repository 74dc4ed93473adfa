"""A two-pass assembler for the instruction table, in a GNU-as-compatible subset.

    assemble(".globl _start\\n_start: li a0, 42\\n ...", base=0x8000_0000) -> bytes
    encode("addi", rd=10, rs1=0, imm=42) -> int

Supported: every instruction of `vm.isa.INSNS` in its canonical form; labels (also the
numeric local labels `1:` with `1b`/`1f`); the pseudo-instructions programs commonly use
(`li`, `la`, `mv`, `j`, `call`, `ret`, `beqz`, `csrr`, ... see `_PSEUDO`); the directives
`.text .data .section .globl .align .p2align .balign .word .half .byte .space .zero .equ
.set .ascii .asciz .string` (layout is one flat image in source order); expressions with
+ - * / % << >> & | ^ ~, parentheses, `.` (the current address), %hi() and %lo().
Errors raise `AsmError` naming the line. Expressions are parsed, never eval'ed.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from vm.csr import CSR_BY_NAME
from vm.isa import ABI_NAMES, BY_NAME, Fmt, Insn, Operands
from vm.isa import encode as encode_fields

MASK32 = 0xFFFF_FFFF

REGISTERS: dict[str, int] = {name: i for i, name in enumerate(ABI_NAMES)}
REGISTERS.update({f"x{i}": i for i in range(32)})
REGISTERS["fp"] = 8

# fence predecessor/successor sets, as GNU as spells them.
_FENCE_BITS = {"i": 8, "o": 4, "r": 2, "w": 1}


_NOP_BYTES = (0x0000_0013).to_bytes(4, "little")  # addi x0, x0, 0


class AsmError(ValueError):
    """Bad assembly source; the message names the line."""


def encode(
    name: str, *, rd: int = 0, rs1: int = 0, rs2: int = 0, imm: int = 0, csr: int = 0
) -> int:
    """Encode one table instruction from its fields; B/J immediates are byte offsets."""
    insn = BY_NAME.get(name)
    if insn is None:
        raise AsmError(f"unknown instruction {name!r}")
    _check_fields(insn, rd=rd, rs1=rs1, rs2=rs2, imm=imm, csr=csr)
    return encode_fields(insn, Operands(rd=rd, rs1=rs1, rs2=rs2, imm=imm, csr=csr))


_IMM_RANGES: dict[Fmt, tuple[int, int, int]] = {
    # format: (lowest, highest, required alignment)
    Fmt.I: (-2048, 2047, 1),
    Fmt.LOAD: (-2048, 2047, 1),
    Fmt.JALR: (-2048, 2047, 1),
    Fmt.S: (-2048, 2047, 1),
    Fmt.SHIFT: (0, 31, 1),
    Fmt.B: (-4096, 4094, 2),
    Fmt.J: (-(1 << 20), (1 << 20) - 2, 2),
    Fmt.CSRI: (0, 31, 1),
    Fmt.FENCE: (0, 255, 1),
}


def _check_fields(insn: Insn, *, rd: int, rs1: int, rs2: int, imm: int, csr: int) -> None:
    for label, reg in (("rd", rd), ("rs1", rs1), ("rs2", rs2)):
        if not 0 <= reg < 32:
            raise AsmError(f"{insn.name}: {label} {reg} is not a register number")
    if insn.fmt is Fmt.U:
        if imm & 0xFFF or not -(1 << 31) <= imm <= MASK32:
            raise AsmError(f"{insn.name}: upper immediate {imm:#x} must be a multiple of 4096")
    elif insn.fmt in _IMM_RANGES:
        low, high, align = _IMM_RANGES[insn.fmt]
        if not low <= imm <= high or imm % align:
            raise AsmError(f"{insn.name}: immediate {imm} out of range [{low}, {high}]")
    if not 0 <= csr < 4096:
        raise AsmError(f"{insn.name}: CSR number {csr:#x} out of range")


# ---------------------------------------------------------------------------------------
# Expressions

_TOKEN = re.compile(
    r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)(?P<local>[bf])?(?![\w.])"
    r"|(?P<char>'(?:\\.|[^'\\])')"
    r"|(?P<func>%(?:hi|lo))"
    r"|(?P<name>[A-Za-z_.$][\w.$]*)"
    r"|(?P<op><<|>>|[-+*/%&|^~()]))"
)


class _Expr:
    """Recursive-descent evaluator over tokens; symbols come from `lookup`."""

    def __init__(self, text: str, lookup, here: int) -> None:  # type: ignore[no-untyped-def]
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise AsmError(f"cannot parse expression {text!r}")
            kind = m.lastgroup
            if kind == "local":
                kind = "num"
            value = m.group(kind) if kind != "num" else m.group("num") + (m.group("local") or "")
            self.tokens.append((kind or "", value))
            pos = m.end()
        self.pos = 0
        self.lookup = lookup
        self.here = here

    def value(self) -> int:
        result = self._binary(0)
        if self.pos != len(self.tokens):
            raise AsmError(f"unexpected {self.tokens[self.pos][1]!r} in expression")
        return result

    # GNU as's precedence, loosest first (not C's): + - bind looser than | & ^, which
    # bind looser than * / % << >>.
    _LEVELS = (("+", "-"), ("|", "&", "^"), ("*", "/", "%", "<<", ">>"))

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _binary(self, level: int) -> int:
        if level == len(self._LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while (
            (tok := self._peek()) is not None and tok[0] == "op" and tok[1] in self._LEVELS[level]
        ):
            self.pos += 1
            right = self._binary(level + 1)
            left = _apply(tok[1], left, right)
        return left

    def _unary(self) -> int:
        tok = self._peek()
        if tok is None:
            raise AsmError("expression ends too early")
        self.pos += 1
        kind, text = tok
        if kind == "op" and text == "-":
            return -self._unary()
        if kind == "op" and text == "+":
            return self._unary()
        if kind == "op" and text == "~":
            return ~self._unary()
        if kind == "op" and text == "(":
            inner = self._binary(0)
            self._expect(")")
            return inner
        if kind == "func":
            self._expect("(")
            inner = self._binary(0) & MASK32
            self._expect(")")
            low = ((inner & 0xFFF) ^ 0x800) - 0x800
            return low if text == "%lo" else ((inner - low) >> 12) & 0xFFFFF
        if kind == "num":
            if text[-1] in "bf" and not text.lower().startswith(("0x", "0b")):
                return int(self.lookup(text))
            return int(text, 0)
        if kind == "char":
            body = text[1:-1]
            return ord(body.encode().decode("unicode_escape"))
        if kind == "name":
            if text == ".":
                return self.here
            return int(self.lookup(text))
        raise AsmError(f"unexpected {text!r} in expression")

    def _expect(self, op: str) -> None:
        tok = self._peek()
        if tok is None or tok[1] != op:
            raise AsmError(f"expected {op!r} in expression")
        self.pos += 1


def _apply(op: str, a: int, b: int) -> int:
    if op in ("/", "%") and b == 0:
        raise AsmError("division by zero in expression")
    return {
        "|": lambda: a | b,
        "^": lambda: a ^ b,
        "&": lambda: a & b,
        "<<": lambda: a << b,
        ">>": lambda: a >> b,
        "+": lambda: a + b,
        "-": lambda: a - b,
        "*": lambda: a * b,
        "/": lambda: int(a / b),
        "%": lambda: a % b,
    }[op]()


# ---------------------------------------------------------------------------------------
# Source model


PseudoFn = Callable[["_Assembler", list[str], int], list[int]]


class _Unresolved(Exception):
    pass


@dataclass(slots=True)
class _Line:
    number: int
    text: str


@dataclass
class Program:
    """An assembled image: bytes at `base`, and the address of every label."""

    base: int
    image: bytes
    symbols: dict[str, int] = field(default_factory=dict)

    def address_of(self, label: str) -> int:
        return self.symbols[label]


def assemble(source: str, *, base: int = 0x8000_0000) -> bytes:
    """Assemble `source` at `base` into a flat image."""
    return assemble_program(source, base=base).image


def assemble_program(source: str, *, base: int = 0x8000_0000) -> Program:
    return _Assembler(source, base).run()


def _split_operands(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    in_string = False
    for ch in text:
        if ch == '"':
            in_string = not in_string
        if not in_string:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(current.strip())
                current = ""
                continue
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _split_statements(line: str) -> list[str]:
    """Split a line at `;` statement separators, but not inside a string literal."""
    pieces = []
    current = []
    in_string = False
    previous = ""
    for ch in line:
        if ch == '"' and previous != "\\":
            in_string = not in_string
        if ch == ";" and not in_string:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
        previous = ch
    pieces.append("".join(current))
    return pieces


def _strip_comment(line: str) -> str:
    out = []
    in_string = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == '"':
            in_string = not in_string
        elif not in_string and (ch == "#" or line.startswith("//", i)):
            break
        elif not in_string and ch == "'" and i + 2 < len(line):
            # a character literal such as '#' must not start a comment
            end = line.find("'", i + 1 + (line[i + 1] == "\\"))
            if end > i:
                out.append(line[i : end + 1])
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


class _Assembler:
    def __init__(self, source: str, base: int) -> None:
        self.base = base
        self.lines = self._lines(source)
        self.symbols: dict[str, int] = {}
        self.locals: dict[str, list[int]] = {}  # numeric label -> addresses in order
        self.li_sizes: dict[int, int] = {}  # address -> words pass 1 gave each `li`
        self.final = False

    @staticmethod
    def _lines(source: str) -> list[_Line]:
        source = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group().count("\n"), source, flags=re.S)
        out = []
        for number, raw in enumerate(source.splitlines(), start=1):
            for piece in _split_statements(_strip_comment(raw)):
                if piece.strip():
                    out.append(_Line(number, piece.strip()))
        return out

    def run(self) -> Program:
        self._pass()  # pass 1: sizes and label addresses
        self.final = True
        image = self._pass()
        return Program(self.base, bytes(image), dict(self.symbols))

    # -- one pass ---------------------------------------------------------------------

    def _pass(self) -> bytearray:
        out = bytearray()
        self.in_code = True  # GNU as starts in .text
        self.local_seen: dict[str, int] = {}
        for line in self.lines:
            try:
                self._line(line.text, out)
            except AsmError as exc:
                raise AsmError(f"line {line.number}: {exc} in {line.text!r}") from None
            except _Unresolved as exc:
                raise AsmError(f"line {line.number}: undefined symbol {exc}") from None
        return out

    def _line(self, text: str, out: bytearray) -> None:
        while True:
            m = re.match(r"([A-Za-z_.$][\w.$]*|\d+)\s*:(?!=)", text)
            if m is None:
                break
            self._define_label(m.group(1), self.base + len(out))
            text = text[m.end() :].strip()
        if not text:
            return
        m = re.match(r"(\S+)\s*(.*)", text)
        assert m is not None  # text is non-empty
        head, rest = m.group(1).lower(), m.group(2).strip()
        if head.startswith("."):
            self._directive(head, rest, out)
        else:
            for word in self._instruction(head, _split_operands(rest), self.base + len(out)):
                out += struct.pack("<I", word & MASK32)

    def _define_label(self, name: str, address: int) -> None:
        if name.isdigit():
            seen = self.local_seen.get(name, 0)
            addresses = self.locals.setdefault(name, [])
            if not self.final:
                addresses.append(address)
            self.local_seen[name] = seen + 1
            return
        if not self.final and name in self.symbols:
            raise AsmError(f"label {name!r} defined twice")
        self.symbols[name] = address

    def _lookup(self, name: str) -> int:
        if name[:-1].isdigit() and name[-1] in "bf":
            digits = name[:-1]
            addresses = self.locals.get(digits, [])
            seen = self.local_seen.get(digits, 0)
            index = seen - 1 if name[-1] == "b" else seen
            if 0 <= index < len(addresses):
                return addresses[index]
            if self.final:
                raise AsmError(f"no local label for {name}")
            raise _Unresolved(name)
        if name in self.symbols:
            return self.symbols[name]
        raise _Unresolved(name)

    def _eval(self, text: str, here: int) -> int:
        return _Expr(text, self._lookup, here).value()

    def _operand(self, text: str, here: int) -> int:
        """An instruction's immediate: in pass 1 a forward reference stands in as 0 (an
        instruction's size never depends on it); pass 2 sees the real value."""
        value = self._eval_or_none(text, here)
        return 0 if value is None else value

    def _eval_or_none(self, text: str, here: int) -> int | None:
        """Pass 1 tolerates forward references (sizes do not depend on them)."""
        try:
            return self._eval(text, here)
        except _Unresolved:
            if self.final:
                raise
            return None

    # -- directives -------------------------------------------------------------------

    def _directive(self, name: str, rest: str, out: bytearray) -> None:
        here = self.base + len(out)
        args = _split_operands(rest)
        if name in (".text", ".data", ".bss", ".section"):
            section = args[0] if name == ".section" and args else name
            self.in_code = section.startswith(".text")
            return
        if name in (".globl", ".global", ".option",
                    ".type", ".size", ".file", ".ident", ".attribute", ".local",
                    ".weak"):  # fmt: skip
            return  # one flat image in source order; symbol metadata has no meaning here
        if name in (".align", ".p2align", ".balign"):
            value = self._eval(args[0], here) if args else 0
            alignment = value if name == ".balign" else 1 << value
            if alignment <= 0 or alignment & (alignment - 1):
                raise AsmError(f"alignment {alignment} is not a power of two")
            padding = (-here) % alignment
            if self.in_code and here % 4 == 0:
                # GNU as fills code with nops, so execution may fall through an .align.
                out += _NOP_BYTES * (padding // 4) + bytes(padding % 4)
            else:
                out += bytes(padding)
            return
        if name in (".word", ".4byte", ".long", ".half", ".2byte", ".short", ".byte"):
            size = (
                4
                if name in (".word", ".4byte", ".long")
                else 2
                if name in (".half", ".2byte", ".short")
                else 1
            )
            for arg in args:
                value = self._eval_or_none(arg, self.base + len(out)) or 0
                if not -(1 << (8 * size - 1)) <= value < 1 << (8 * size):
                    raise AsmError(f"value {value} does not fit in {size} bytes")
                out += (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            return
        if name in (".space", ".zero", ".skip"):
            count = self._eval(args[0], here)
            fill = self._eval(args[1], here) & 0xFF if len(args) > 1 else 0
            if count < 0:
                raise AsmError("negative .space size")
            out += bytes([fill]) * count
            return
        if name in (".equ", ".set"):
            if len(args) != 2:
                raise AsmError(f"{name} takes a name and a value")
            self.symbols[args[0]] = self._eval(args[1], here)
            return
        if name in (".ascii", ".asciz", ".string"):
            for arg in args:
                if len(arg) < 2 or arg[0] != '"' or arg[-1] != '"':
                    raise AsmError(f"{name} needs a quoted string")
                data = arg[1:-1].encode("latin-1").decode("unicode_escape").encode("latin-1")
                out += data + (b"\0" if name != ".ascii" else b"")
            return
        raise AsmError(f"unknown directive {name}")

    # -- instructions -----------------------------------------------------------------

    def _reg(self, text: str) -> int:
        reg = REGISTERS.get(text.strip().lower())
        if reg is None:
            raise AsmError(f"{text!r} is not a register")
        return reg

    def _mem(self, text: str, here: int) -> tuple[int, int]:
        m = re.fullmatch(r"(.*)\(\s*([\w$]+)\s*\)", text.strip())
        if m is None:
            raise AsmError(f"{text!r} is not a memory operand imm(reg)")
        offset = self._operand(m.group(1), here) if m.group(1).strip() else 0
        return offset, self._reg(m.group(2))

    def _csr(self, text: str, here: int) -> int:
        number = CSR_BY_NAME.get(text.strip().lower())
        return number if number is not None else self._eval(text, here)

    def _target(self, text: str, here: int) -> int:
        value = self._eval_or_none(text, here)
        return 0 if value is None else value - here

    def _instruction(self, name: str, ops: list[str], here: int) -> list[int]:
        pseudo = _PSEUDO.get(name)
        if pseudo is not None and (name not in BY_NAME or len(ops) != _canonical_arity(name)):
            return pseudo(self, ops, here)
        insn = BY_NAME.get(name)
        if insn is None:
            raise AsmError(f"unknown instruction {name!r}")
        return [self._canonical(insn, ops, here)]

    def _canonical(self, insn: Insn, ops: list[str], here: int) -> int:
        fmt = insn.fmt
        arity = _ARITY[fmt]
        if len(ops) != arity:
            raise AsmError(f"{insn.name} takes {arity} operands, got {len(ops)}")
        if fmt is Fmt.R:
            return encode(
                insn.name, rd=self._reg(ops[0]), rs1=self._reg(ops[1]), rs2=self._reg(ops[2])
            )
        if fmt in (Fmt.I, Fmt.SHIFT):
            return encode(
                insn.name,
                rd=self._reg(ops[0]),
                rs1=self._reg(ops[1]),
                imm=self._operand(ops[2], here),
            )
        if fmt in (Fmt.LOAD, Fmt.JALR):
            offset, base = self._mem(ops[1], here)
            return encode(insn.name, rd=self._reg(ops[0]), rs1=base, imm=offset)
        if fmt is Fmt.S:
            offset, base = self._mem(ops[1], here)
            return encode(insn.name, rs2=self._reg(ops[0]), rs1=base, imm=offset)
        if fmt is Fmt.B:
            return encode(
                insn.name,
                rs1=self._reg(ops[0]),
                rs2=self._reg(ops[1]),
                imm=self._target(ops[2], here),
            )
        if fmt is Fmt.U:
            value = self._eval_or_none(ops[1], here) or 0
            if not 0 <= value <= 0xFFFFF:
                raise AsmError(f"{insn.name}: immediate {value:#x} does not fit in 20 bits")
            return encode(insn.name, rd=self._reg(ops[0]), imm=value << 12)
        if fmt is Fmt.J:
            return encode(insn.name, rd=self._reg(ops[0]), imm=self._target(ops[1], here))
        if fmt is Fmt.CSR:
            return encode(
                insn.name, rd=self._reg(ops[0]), csr=self._csr(ops[1], here), rs1=self._reg(ops[2])
            )
        if fmt is Fmt.CSRI:
            return encode(
                insn.name,
                rd=self._reg(ops[0]),
                csr=self._csr(ops[1], here),
                imm=self._operand(ops[2], here),
            )
        if fmt is Fmt.FENCE:
            return encode(insn.name, imm=(_fence_set(ops[0]) << 4) | _fence_set(ops[1]))
        return encode(insn.name)  # fmt: skip


_ARITY = {
    Fmt.R: 3, Fmt.I: 3, Fmt.SHIFT: 3, Fmt.LOAD: 2, Fmt.S: 2, Fmt.B: 3, Fmt.U: 2, Fmt.J: 2,
    Fmt.JALR: 2, Fmt.CSR: 3, Fmt.CSRI: 3, Fmt.FENCE: 2, Fmt.NONE: 0,
}  # fmt: skip


def _canonical_arity(name: str) -> int:
    return _ARITY[BY_NAME[name].fmt]


def _fence_set(text: str) -> int:
    text = text.strip().lower()
    if text == "0":
        return 0  # the empty set, as the disassembler prints it
    bits = 0
    for ch in text:
        if ch not in _FENCE_BITS:
            raise AsmError(f"bad fence set {text!r}")
        bits |= _FENCE_BITS[ch]
    return bits


# ---------------------------------------------------------------------------------------
# Pseudo-instructions: each returns the words it expands to. Sizes must not depend on
# forward references, so `li`/`la`/`call` with an unresolved value take their long form.


def _li_words(rd: int, value: int | None) -> list[int]:
    if value is not None:
        if not -(1 << 31) <= value <= MASK32:
            raise AsmError(f"li value {value:#x} does not fit in 32 bits")
        value &= MASK32
        signed = (value ^ 0x8000_0000) - 0x8000_0000
        if -2048 <= signed <= 2047:
            return [encode("addi", rd=rd, rs1=0, imm=signed)]
        low = ((value & 0xFFF) ^ 0x800) - 0x800
        high = (value - low) & MASK32
        words = [encode("lui", rd=rd, imm=high)]
        if low:
            words.append(encode("addi", rd=rd, rs1=rd, imm=low))
        return words
    return [encode("lui", rd=rd, imm=0), encode("addi", rd=rd, rs1=rd, imm=0)]


def _pcrel_pair(first: str, second: str, rd: int, link: int, offset: int | None) -> list[int]:
    offset = 0 if offset is None else offset
    low = ((offset & 0xFFF) ^ 0x800) - 0x800
    high = (offset - low) & MASK32
    return [encode(first, rd=rd, imm=high), encode(second, rd=link, rs1=rd, imm=low)]


def _li(a: _Assembler, ops: list[str], here: int) -> list[int]:
    _arity("li", ops, 2)
    rd = a._reg(ops[0])
    if not a.final:
        words = _li_words(rd, a._eval_or_none(ops[1], here))
        a.li_sizes[here] = len(words)
        return words
    value = a._eval(ops[1], here)
    words = _li_words(rd, value)
    if len(words) != a.li_sizes[here]:
        # Pass 1 could not see the value yet and reserved lui + addi: keep that size.
        words = _long_li(rd, value)
    return words


def _long_li(rd: int, value: int) -> list[int]:
    value &= MASK32
    low = ((value & 0xFFF) ^ 0x800) - 0x800
    return [
        encode("lui", rd=rd, imm=(value - low) & MASK32),
        encode("addi", rd=rd, rs1=rd, imm=low),
    ]


def _jalr(a: _Assembler, ops: list[str], here: int) -> list[int]:
    if len(ops) == 1:  # jalr rs
        return [encode("jalr", rd=1, rs1=a._reg(ops[0]))]
    _arity("jalr", ops, 3)  # jalr rd, rs1, imm
    return [encode("jalr", rd=a._reg(ops[0]), rs1=a._reg(ops[1]), imm=a._operand(ops[2], here))]


def _la(a: _Assembler, ops: list[str], here: int) -> list[int]:
    _arity("la", ops, 2)
    rd = a._reg(ops[0])
    target = a._eval_or_none(ops[1], here)
    return _pcrel_pair("auipc", "addi", rd, rd, None if target is None else target - here)


def _call(a: _Assembler, ops: list[str], here: int, *, link: int) -> list[int]:
    _arity("call", ops, 1)
    target = a._eval_or_none(ops[0], here)
    scratch = 1 if link == 1 else 6  # GNU: call uses ra, tail uses t1
    return _pcrel_pair("auipc", "jalr", scratch, link, None if target is None else target - here)


def _arity(name: str, ops: list[str], n: int) -> None:
    if len(ops) != n:
        raise AsmError(f"{name} takes {n} operands, got {len(ops)}")


def _rr(canonical: str, *, swap: bool) -> PseudoFn:
    """`op rs, rt, target` branch aliases; `swap` exchanges the two sources."""

    def expand(a: _Assembler, ops: list[str], here: int) -> list[int]:
        _arity(canonical, ops, 3)
        first, second = (ops[1], ops[0]) if swap else (ops[0], ops[1])
        return [
            encode(canonical, rs1=a._reg(first), rs2=a._reg(second), imm=a._target(ops[2], here))
        ]

    return expand


def _rz(canonical: str, *, zero_first: bool) -> PseudoFn:
    """`op rs, target` branches against zero."""

    def expand(a: _Assembler, ops: list[str], here: int) -> list[int]:
        _arity(canonical, ops, 2)
        reg = a._reg(ops[0])
        rs1, rs2 = (0, reg) if zero_first else (reg, 0)
        return [encode(canonical, rs1=rs1, rs2=rs2, imm=a._target(ops[1], here))]

    return expand


def _csr_pseudo(canonical: str, *, reads: bool) -> PseudoFn:
    """csrr rd, csr / csrw csr, rs / csrwi csr, uimm and friends."""

    def expand(a: _Assembler, ops: list[str], here: int) -> list[int]:
        if reads:  # csrr rd, csr
            _arity(canonical, ops, 2)
            return [encode(canonical, rd=a._reg(ops[0]), csr=a._csr(ops[1], here), rs1=0)]
        _arity(canonical, ops, 2)  # csrw csr, rs / csrwi csr, imm
        insn = BY_NAME[canonical]
        if insn.fmt is Fmt.CSRI:
            return [encode(canonical, csr=a._csr(ops[0], here), imm=a._operand(ops[1], here))]
        return [encode(canonical, csr=a._csr(ops[0], here), rs1=a._reg(ops[1]))]

    return expand


def _unary(canonical: str, *, source: str = "rs1", imm: int = 0) -> PseudoFn:
    """`op rd, rs` aliases: `rs` goes to the `source` field, the immediate is fixed."""

    def expand(a: _Assembler, ops: list[str], here: int) -> list[int]:
        del here
        _arity(canonical, ops, 2)
        fields = {"rd": a._reg(ops[0]), source: a._reg(ops[1])}
        return [encode(canonical, imm=imm, **fields)]

    return expand


def _jump(*, rd: int) -> PseudoFn:
    """`j target` and `jal target`."""

    def expand(a: _Assembler, ops: list[str], here: int) -> list[int]:
        _arity("jal", ops, 1)
        return [encode("jal", rd=rd, imm=a._target(ops[0], here))]

    return expand


def _fixed(word: int) -> PseudoFn:
    """Aliases without operands (nop, ret, fence)."""

    def expand(a: _Assembler, ops: list[str], here: int) -> list[int]:
        del a, here
        _arity("this pseudo-instruction", ops, 0)
        return [word]

    return expand


def _jr(a: _Assembler, ops: list[str], here: int) -> list[int]:
    del here
    _arity("jr", ops, 1)
    return [encode("jalr", rd=0, rs1=a._reg(ops[0]))]


_PSEUDO: dict[str, PseudoFn] = {
    "nop": _fixed(encode("addi")),
    "li": _li,
    "la": _la,
    "lla": _la,
    "mv": _unary("addi"),
    "not": _unary("xori", imm=-1),
    "neg": _unary("sub", source="rs2"),
    "seqz": _unary("sltiu", imm=1),
    "snez": _unary("sltu", source="rs2"),
    "sltz": _unary("slt"),
    "sgtz": _unary("slt", source="rs2"),
    "beqz": _rz("beq", zero_first=False),
    "bnez": _rz("bne", zero_first=False),
    "bltz": _rz("blt", zero_first=False),
    "bgez": _rz("bge", zero_first=False),
    "blez": _rz("bge", zero_first=True),
    "bgtz": _rz("blt", zero_first=True),
    "bgt": _rr("blt", swap=True),
    "ble": _rr("bge", swap=True),
    "bgtu": _rr("bltu", swap=True),
    "bleu": _rr("bgeu", swap=True),
    "j": _jump(rd=0),
    "jal": _jump(rd=1),
    "jr": _jr,
    "jalr": _jalr,
    "ret": _fixed(encode("jalr", rd=0, rs1=1)),
    "call": lambda a, ops, here: _call(a, ops, here, link=1),
    "tail": lambda a, ops, here: _call(a, ops, here, link=0),
    "fence": _fixed(encode("fence", imm=0xFF)),
    "csrr": _csr_pseudo("csrrs", reads=True),
    "csrw": _csr_pseudo("csrrw", reads=False),
    "csrs": _csr_pseudo("csrrs", reads=False),
    "csrc": _csr_pseudo("csrrc", reads=False),
    "csrwi": _csr_pseudo("csrrwi", reads=False),
    "csrsi": _csr_pseudo("csrrsi", reads=False),
    "csrci": _csr_pseudo("csrrci", reads=False),
}  # fmt: skip
