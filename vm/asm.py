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

import functools
import operator
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from vm.csr import CSR_BY_NAME
from vm.isa import ABI_NAMES, BY_NAME, INSNS, Fmt, Insn, Operands
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
    return encode_fields(insn, Operands(rd, rs1, rs2, imm, csr))


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
# The same by instruction name: hashing a str is cached, hashing an Enum member is a
# Python-level call, and this is looked up for every instruction assembled.
_IMM_RANGE_OF: dict[str, tuple[int, int, int] | None] = {
    insn.name: _IMM_RANGES.get(insn.fmt) for insn in INSNS
}


def _check_fields(insn: Insn, *, rd: int, rs1: int, rs2: int, imm: int, csr: int) -> None:
    if not (0 <= rd < 32 and 0 <= rs1 < 32 and 0 <= rs2 < 32):  # one test on the hot path
        for label, reg in (("rd", rd), ("rs1", rs1), ("rs2", rs2)):
            if not 0 <= reg < 32:
                raise AsmError(f"{insn.name}: {label} {reg} is not a register number")
    if insn.fmt is Fmt.U:
        if imm & 0xFFF or not -(1 << 31) <= imm <= MASK32:
            raise AsmError(f"{insn.name}: upper immediate {imm:#x} must be a multiple of 4096")
    elif (limits := _IMM_RANGE_OF[insn.name]) is not None:
        low, high, align = limits
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
    return _OPERATORS[op](a, b)


def _divide(a: int, b: int) -> int:
    if b == 0:
        raise AsmError("division by zero in expression")
    return int(a / b)


def _modulo(a: int, b: int) -> int:
    if b == 0:
        raise AsmError("division by zero in expression")
    return a % b


_OPERATORS: dict[str, Callable[[int, int], int]] = {
    "|": operator.or_,
    "^": operator.xor,
    "&": operator.and_,
    "<<": operator.lshift,
    ">>": operator.rshift,
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
    "%": _modulo,
}


# An expression compiled to a closure: (lookup, here) -> value. Generated programs repeat
# the same operand texts ("0", "t0", "UART", "data_page + 8") thousands of times, and each
# is needed in both passes: tokenizing and parsing them once per text, not once per use,
# was most of the expression cost.
_Lookup = Callable[[str], int]
_Compiled = Callable[[_Lookup, int], int]


class _Compiler(_Expr):
    """The grammar of `_Expr` (same tokens, same precedence), building closures instead of
    values. A closure evaluates its operands in the order `_Expr` does (left, then right,
    then the operator), so it looks up the same symbols and fails the same way."""

    def compiled(self) -> _Compiled:
        node = self._node(0)
        if self.pos != len(self.tokens):
            raise AsmError(f"unexpected {self.tokens[self.pos][1]!r} in expression")
        return node

    def _node(self, level: int) -> _Compiled:
        if level == len(self._LEVELS):
            return self._leaf()
        left = self._node(level + 1)
        while (
            (tok := self._peek()) is not None and tok[0] == "op" and tok[1] in self._LEVELS[level]
        ):
            self.pos += 1
            left = _binary_node(_OPERATORS[tok[1]], left, self._node(level + 1))
        return left

    def _leaf(self) -> _Compiled:
        tok = self._peek()
        if tok is None:
            raise AsmError("expression ends too early")
        self.pos += 1
        kind, text = tok
        if kind == "op" and text in _UNARY:
            return _unary_node(_UNARY[text], self._leaf())
        if kind == "op" and text == "(":
            inner = self._node(0)
            self._expect(")")
            return inner
        if kind == "func":
            self._expect("(")
            inner = self._node(0)
            self._expect(")")
            return _hi_lo_node(inner, low_part=text == "%lo")
        if kind == "num":
            if text[-1] in "bf" and not text.lower().startswith(("0x", "0b")):
                return _symbol_node(text)
            return _constant_node(int(text, 0))
        if kind == "char":
            body = text[1:-1]
            return _constant_node(ord(body.encode().decode("unicode_escape")))
        if kind == "name":
            return _here_node if text == "." else _symbol_node(text)
        raise AsmError(f"unexpected {text!r} in expression")


_UNARY: dict[str, Callable[[int], int]] = {
    "-": operator.neg,
    "+": operator.pos,
    "~": operator.invert,
}


def _constant_node(value: int) -> _Compiled:
    return lambda lookup, here: value


def _here_node(lookup: _Lookup, here: int) -> int:
    return here


def _symbol_node(name: str) -> _Compiled:
    return lambda lookup, here: int(lookup(name))


def _unary_node(op: Callable[[int], int], inner: _Compiled) -> _Compiled:
    return lambda lookup, here: op(inner(lookup, here))


def _binary_node(op: Callable[[int, int], int], left: _Compiled, right: _Compiled) -> _Compiled:
    return lambda lookup, here: op(left(lookup, here), right(lookup, here))


def _hi_lo_node(inner: _Compiled, *, low_part: bool) -> _Compiled:
    def evaluate(lookup: _Lookup, here: int) -> int:
        value = inner(lookup, here) & MASK32
        low = ((value & 0xFFF) ^ 0x800) - 0x800
        return low if low_part else ((value - low) >> 12) & 0xFFFFF

    return evaluate


@functools.lru_cache(maxsize=8192)
def _compile(text: str) -> _Compiled:
    """`text` compiled once (a bounded cache: a campaign assembles many programs).

    Any text that does not compile (a syntax error, a literal int() or the escape decoder
    rejects) is left to `_Expr` at each use: it interleaves parsing with evaluation, so
    which error it reports (or whether an unresolved symbol comes first) depends on the
    symbols, and only `_Expr` itself reproduces that exactly."""
    try:
        return _Compiler(text, None, 0).compiled()
    except Exception:  # whatever it is, _Expr raises it again at each use
        return lambda lookup, here: _Expr(text, lookup, here).value()


# ---------------------------------------------------------------------------------------
# Source model


PseudoFn = Callable[["_Assembler", list[str], int], list[int]]


class _Unresolved(Exception):
    pass


@dataclass(slots=True)
class _Line:
    """One statement, parsed once for both passes."""

    number: int
    text: str  # as the error messages quote it: labels included, comments not
    labels: tuple[str, ...]  # the labels before the statement, in order
    head: str  # the mnemonic or directive, lower-cased; "" if the line only has labels
    ops: list[str]  # the operands, split at top-level commas
    # Pass 1's bytes for this statement and the address they went to, when they depend
    # on no symbol and the statement changes no state (see `_Assembler._line`).
    data: bytes | None = None
    address: int = -1


_LABEL = re.compile(r"([A-Za-z_.$][\w.$]*|\d+)\s*:(?!=)")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_MEMORY_OPERAND = re.compile(r"(.*)\(\s*([\w$]+)\s*\)")


def _parse_line(number: int, text: str) -> _Line:
    """Labels, head and operands of one stripped, non-empty statement."""
    labels = []
    rest = text
    if ":" in rest:
        while (m := _LABEL.match(rest)) is not None:
            labels.append(m.group(1))
            rest = rest[m.end() :].strip()
    if not rest:
        return _Line(number, text, tuple(labels), "", [])
    # As re.match(r"(\S+)\s*(.*)") would: str.split and \s agree on what whitespace is,
    # and a line has no line breaks left for `.` to stop at.
    parts = rest.split(None, 1)
    operands = parts[1].strip() if len(parts) > 1 else ""
    return _Line(number, text, tuple(labels), parts[0].lower(), _split_operands(operands))


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
    if '"' not in text:
        return _split_plain_operands(text)
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


def _split_plain_operands(text: str) -> list[str]:
    """`_split_operands` for text without a string literal, by str.split: a comma splits
    where the parentheses before it balance (an excess `)` keeps later commas too, as in
    the loop), an empty operand is kept except at the end."""
    pieces = text.split(",")
    parts: list[str] = []
    pending: str | None = None  # pieces joined while their parentheses do not balance
    depth = 0
    for piece in pieces[:-1]:
        pending = piece if pending is None else f"{pending},{piece}"
        if "(" in piece or ")" in piece:
            depth += piece.count("(") - piece.count(")")
        if depth == 0:
            parts.append(pending.strip())
            pending = None
    last = (pieces[-1] if pending is None else f"{pending},{pieces[-1]}").strip()
    if last:
        parts.append(last)
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
        if "/*" in source:
            source = _BLOCK_COMMENT.sub(lambda m: "\n" * m.group().count("\n"), source)
        out = []
        for number, raw in enumerate(source.splitlines(), start=1):
            if '"' in raw or "'" in raw:
                pieces = _split_statements(_strip_comment(raw))
            else:
                # Without quotes a comment is everything from the first # or //, and every
                # ; separates statements: what the character loops find, at C speed.
                code = raw
                if "#" in code:
                    code = code[: code.index("#")]
                if "//" in code:
                    code = code[: code.index("//")]
                pieces = code.split(";") if ";" in code else [code]
            for piece in pieces:
                statement = piece.strip()
                if statement:
                    out.append(_parse_line(number, statement))
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
                self._line(line, out)
            except AsmError as exc:
                raise AsmError(f"line {line.number}: {exc} in {line.text!r}") from None
            except _Unresolved as exc:
                raise AsmError(f"line {line.number}: undefined symbol {exc}") from None
        return out

    def _line(self, line: _Line, out: bytearray) -> None:
        start = len(out)
        here = self.base + start
        for label in line.labels:
            self._define_label(label, here)
        head = line.head
        if not head:
            return
        if line.data is not None and line.address == here:
            # Pass 2 of a statement whose bytes depend only on its text and address: what
            # pass 1 produced (most of a generated program: li of a number, register ALU
            # ops, loads and stores off a register).
            out += line.data
            return
        self.looked_up = False
        if head[0] == ".":
            self._directive(head, line.ops, out)
        else:
            for word in self._instruction(head, line.ops, here):
                out += _pack_word(word & MASK32)
        if not self.final and not self.looked_up and head not in _STATEFUL_DIRECTIVES:
            # Nothing looked up a symbol (so no value can change by pass 2, and the
            # forward-reference leniency of pass 1 played no part), nothing but bytes
            # came out: pass 2 would produce the same bytes at the same address.
            line.data = bytes(out[start:])
            line.address = here

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
        self.looked_up = True
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
        return _compile(text)(self._lookup, here)

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

    def _directive(self, name: str, args: list[str], out: bytearray) -> None:
        here = self.base + len(out)
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
        reg = REGISTERS.get(text)  # operands come stripped, and mostly lower-case
        if reg is None:
            reg = REGISTERS.get(text.strip().lower())
        if reg is None:
            raise AsmError(f"{text!r} is not a register")
        return reg

    def _mem(self, text: str, here: int) -> tuple[int, int]:
        form = _memory_form(text)
        if form is None:
            raise AsmError(f"{text!r} is not a memory operand imm(reg)")
        offset_text, register = form
        offset = self._operand(offset_text, here) if offset_text.strip() else 0
        return offset, self._reg(register)

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
        arity = _ARITY_OF[insn.name]
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


@functools.lru_cache(maxsize=4096)
def _memory_form(text: str) -> tuple[str, str] | None:
    """The offset and register texts of `imm(reg)`, once per operand text."""
    m = _MEMORY_OPERAND.fullmatch(text.strip())
    return None if m is None else (m.group(1), m.group(2))


_pack_word = struct.Struct("<I").pack

# Directives with an effect besides their bytes: pass 2 must run them again.
_STATEFUL_DIRECTIVES = frozenset({".text", ".data", ".bss", ".section", ".equ", ".set"})

_ARITY = {
    Fmt.R: 3, Fmt.I: 3, Fmt.SHIFT: 3, Fmt.LOAD: 2, Fmt.S: 2, Fmt.B: 3, Fmt.U: 2, Fmt.J: 2,
    Fmt.JALR: 2, Fmt.CSR: 3, Fmt.CSRI: 3, Fmt.FENCE: 2, Fmt.NONE: 0,
}  # fmt: skip


_ARITY_OF: dict[str, int] = {insn.name: _ARITY[insn.fmt] for insn in INSNS}  # see _IMM_RANGE_OF


def _canonical_arity(name: str) -> int:
    return _ARITY_OF[name]


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
