"""Hypothesis strategies for random RV32IM guest programs, shared by the property and
differential tests.

A program is a list of *items*. Each item flattens to *atoms*: an `int` is one instruction
word; a `Patch` is one store instruction whose offset is resolved once the whole program is
laid out (it writes into the program's own code: self-modifying code). Items never contain
backward control flow except the bounded counting loop (`counted_loop`), so every program
terminates; the tests run everything under a budget as well, so even a program whose
patches turn its code into an endless loop is cut.

Register conventions (shared by every generator here):

- x31 (`REG_DATA`) points into the middle of the data page; loads and stores address
  `imm(x31)`, so data accesses stay inside that page. Generated code never writes x31.
- x29 (`REG_LOOP`) is the counter of the counting loops; generated code never writes it
  (except the loops themselves) and the trap handler leaves it alone.
- x30 (`REG_TRAP`) is the trap handler's scratch register: generated code may write it.
- x27 / x28 (`REG_T1`/`REG_T2`) are the temporaries of multi-instruction sequences (MMIO,
  patches, constant loading); sequences set them right before use, so other code may also
  write them.
"""

from __future__ import annotations

import gc
import hashlib
from dataclasses import dataclass, field

from hypothesis import strategies as st

from vm import Machine, MachineConfig
from vm.asm import encode
from vm.csr import Csr
from vm.isa import decode

MASK32 = 0xFFFF_FFFF
RAM_BASE = 0x8000_0000
RAM_SIZE = 1 << 20
CODE_BASE = RAM_BASE
HANDLER_BASE = RAM_BASE + 0x8000  # its own page, away from the body
DATA_PAGE = RAM_BASE + 0x10000
DATA_SIZE = 0x1000
DATA_PTR = DATA_PAGE + 0x800  # x31: imm12 offsets reach exactly the whole data page

UART_THR = 0x1000_0000
CLINT_MTIMECMP = 0x0200_4000
CLINT_MTIME = 0x0200_BFF8
FINISHER = 0x0010_0000

REG_DATA = 31
REG_TRAP = 30
REG_LOOP = 29
REG_T1 = 28
REG_T2 = 27

# Registers generated code may write (x0 is added separately, as a discarded destination).
WRITABLE = tuple(r for r in range(1, 32) if r not in (REG_DATA, REG_LOOP))
ALL_REGS = tuple(range(32))

INT_MIN = 0x8000_0000
INT_MAX = 0x7FFF_FFFF

# Values that sit on the edges of the RV32 ALU: signs, 12-bit immediates, shift amounts
# (low five bits 31/0/1 and amounts 32/33), M-extension corner cases.
EDGE_VALUES = (
    0,
    1,
    2,
    MASK32,  # -1
    MASK32 - 1,  # -2
    INT_MIN,
    INT_MIN + 1,
    INT_MAX,
    0x7FF,
    0x800,
    0xFFFF_F800,  # -2048
    0xFFF,
    0x1000,
    31,
    32,
    33,
    63,
    64,
    0xFFFF_FFE0,  # low bits 0, negative
    0xFFFF_FFE1,  # low bits 1
    0xFFFF_FFDF,  # low bits 31
    0x8000_001F,
    0x8000_0020,
    0xFF,
    0x80,
    0xFFFF,
    0x8000,
    0x1_0000,
    0x5555_5555,
    0xAAAA_AAAA,
    0x0001_0001,
    0xFFFF_0000,
)

values = st.one_of(st.sampled_from(EDGE_VALUES), st.integers(0, MASK32))


def weighted(*options: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:  # type: ignore[type-arg]
    """Choose among strategies with integer weights. (`st.one_of` flattens nested one_ofs
    into one uniform choice over all their branches, which would skew the mix.)"""
    table = [strategy for weight, strategy in options for _ in range(weight)]

    @st.composite
    def pick(draw: st.DrawFn) -> object:
        return draw(table[draw(st.integers(0, len(table) - 1))])

    return pick()


R_ALU = ("add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and")
R_M = ("mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu")
R_OPS = R_ALU + R_M
I_OPS = ("addi", "slti", "sltiu", "xori", "ori", "andi")
SHIFT_OPS = ("slli", "srli", "srai")
U_OPS = ("lui", "auipc")
LOAD_OPS = {"lb": 1, "lh": 2, "lw": 4, "lbu": 1, "lhu": 2}
STORE_OPS = {"sb": 1, "sh": 2, "sw": 4}
BRANCH_OPS = ("beq", "bne", "blt", "bge", "bltu", "bgeu")

# A word that decodes to no instruction: low bits != 0b11 (no C extension here), a
# custom/reserved major opcode, or a reserved encoding of a known one.
ILLEGAL_WORDS = (0x0000_0000, 0xFFFF_FFFF, 0x0000_000B, 0x4000_1013, 0x0200_5013, 0x8000_0033)
assert all(decode(w) is None for w in ILLEGAL_WORDS)


# ---------------------------------------------------------------------------------------
# Atoms and layout


@dataclass(frozen=True)
class Patch:
    """A store into this program's own code: `{op} x{REG_T1}, off(x{REG_T2})`, where the
    preceding atom is `auipc x{REG_T2}, 0` and off addresses atom `self + rel` (clamped to
    the body) plus `byte` bytes."""

    op: str  # sb / sh / sw
    rel: int
    byte: int = 0


@dataclass(frozen=True)
class Pinned:
    """An instruction word that patches never target (the patch sequences themselves, in
    programs whose patches must stay well-formed)."""

    word: int


Atom = int | Patch | Pinned


@dataclass(frozen=True)
class Program:
    """A laid-out guest program and the initial state it runs from."""

    code: tuple[int, ...]  # words at CODE_BASE
    regs: tuple[int, ...]  # initial x0..x31 (x0 ignored)
    data: bytes = bytes(DATA_SIZE)  # initial contents of the data page
    handler: tuple[int, ...] = ()  # words at HANDLER_BASE (empty: none)
    mscratch: int = 0
    icount_shift: int = 0
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def code_bytes(self) -> bytes:
        return words_bytes(self.code)

    @property
    def end(self) -> int:
        """The address of the last word (the final self-loop)."""
        return CODE_BASE + 4 * (len(self.code) - 1)

    def listing(self) -> str:
        from vm.disasm import disassemble

        lines = [
            f"{CODE_BASE + 4 * i:#010x}: {w:08x}  {disassemble(w, pc=CODE_BASE + 4 * i)}"
            for i, w in enumerate(self.code)
        ]
        regs = ", ".join(f"x{i}={v:#x}" for i, v in enumerate(self.regs) if i)
        return "\n".join([*lines, f"regs: {regs}", f"shift: {self.icount_shift}"])


def words_bytes(words: tuple[int, ...] | list[int]) -> bytes:
    return b"".join((w & MASK32).to_bytes(4, "little") for w in words)


def li(rd: int, value: int) -> tuple[int, int]:
    """`lui rd, hi; addi rd, rd, lo` loading any 32-bit value (always two words)."""
    value &= MASK32
    lo = ((value & 0xFFF) ^ 0x800) - 0x800
    hi = (value - lo) & MASK32
    return (encode("lui", rd=rd, imm=hi), encode("addi", rd=rd, rs1=rd, imm=lo))


def flatten(items: list[tuple[Atom, ...]] | tuple[tuple[Atom, ...], ...]) -> list[Atom]:
    return [atom for item in items for atom in item]


def resolve(atoms: list[Atom], *, body_len: int | None = None) -> list[int]:
    """Turn the atoms into words: each Patch becomes a store relative to the auipc before it,
    aimed at the nearest instruction of the body (the first `body_len` atoms) that is
    neither a Patch nor Pinned; without one, the store becomes a nop."""
    body_len = len(atoms) if body_len is None else body_len
    targets = [i for i, a in enumerate(atoms[:body_len]) if isinstance(a, int)]
    words: list[int] = []
    for i, atom in enumerate(atoms):
        if isinstance(atom, int):
            words.append(atom & MASK32)
            continue
        if isinstance(atom, Pinned):
            words.append(atom.word & MASK32)
            continue
        if not targets:
            words.append(encode("addi"))
            continue
        want = min(max(i + atom.rel, 0), body_len - 1)
        target = min(targets, key=lambda t: (abs(t - want), t))
        offset = 4 * (target - (i - 1)) + atom.byte
        offset = max(-2048, min(2047, offset))
        words.append(encode(atom.op, rs1=REG_T2, rs2=REG_T1, imm=offset))
    return words


# ---------------------------------------------------------------------------------------
# Strategies for single instructions

dest = st.sampled_from((*WRITABLE, 0, 0))  # x0 sometimes: the write must vanish
dest_nonzero = st.sampled_from(WRITABLE)
src = st.sampled_from(ALL_REGS)

imm12 = st.one_of(
    st.sampled_from((0, 1, -1, 2, 31, 32, 0x7FF, -0x800, -0x7FF, 0x400, -2)),
    st.integers(-2048, 2047),
)
shamt = st.one_of(st.sampled_from((0, 1, 30, 31)), st.integers(0, 31))
upper = st.one_of(
    st.sampled_from((0, 0x8000_0000, 0xFFFF_F000, 0x7FFF_F000, 0x1000, 0x800_0000)),
    st.integers(0, 0xFFFFF).map(lambda v: v << 12),
)


@st.composite
def r_type(draw: st.DrawFn, ops: tuple[str, ...] = R_OPS) -> tuple[int]:
    name = draw(st.sampled_from(ops))
    return (encode(name, rd=draw(dest), rs1=draw(src), rs2=draw(src)),)


@st.composite
def i_type(draw: st.DrawFn) -> tuple[int]:
    name = draw(st.sampled_from(I_OPS))
    return (encode(name, rd=draw(dest), rs1=draw(src), imm=draw(imm12)),)


@st.composite
def shift_imm(draw: st.DrawFn) -> tuple[int]:
    name = draw(st.sampled_from(SHIFT_OPS))
    return (encode(name, rd=draw(dest), rs1=draw(src), imm=draw(shamt)),)


@st.composite
def u_type(draw: st.DrawFn) -> tuple[int]:
    name = draw(st.sampled_from(U_OPS))
    return (encode(name, rd=draw(dest), imm=draw(upper)),)


@st.composite
def const_op(
    draw: st.DrawFn, ops: tuple[str, ...] = (*R_M, "sll", "srl", "sra", "slt", "sltu")
) -> tuple[int, ...]:
    """Edge constants loaded into the temporaries, then an R-type op on them: pins the
    M-extension corner cases (x / 0, INT_MIN / -1) and shift amounts 31/32/33 by register."""
    a = draw(st.sampled_from(EDGE_VALUES))
    b = draw(st.one_of(st.sampled_from((0, MASK32, 1, 31, 32, 33, INT_MIN)), values))
    name = draw(st.sampled_from(ops))
    return (
        *li(REG_T1, a),
        *li(REG_T2, b),
        encode(name, rd=draw(dest_nonzero), rs1=REG_T1, rs2=REG_T2),
    )


def data_offset(size: int, *, misaligned: bool) -> st.SearchStrategy[int]:
    """An imm12 so that imm(x31) .. +size-1 stays inside the data page."""
    low, high = -0x800, 0x800 - size
    if misaligned and size > 1:
        return st.integers(low, high)
    return st.integers(low // size, high // size).map(lambda k: k * size)


@st.composite
def load(draw: st.DrawFn, *, misaligned: bool = True) -> tuple[int]:
    name = draw(st.sampled_from(tuple(LOAD_OPS)))
    mis = misaligned and draw(st.integers(0, 3)) == 0
    off = draw(data_offset(LOAD_OPS[name], misaligned=mis))
    return (encode(name, rd=draw(dest), rs1=REG_DATA, imm=off),)


@st.composite
def store(draw: st.DrawFn, *, misaligned: bool = True) -> tuple[int]:
    name = draw(st.sampled_from(tuple(STORE_OPS)))
    mis = misaligned and draw(st.integers(0, 3)) == 0
    off = draw(data_offset(STORE_OPS[name], misaligned=mis))
    return (encode(name, rs1=REG_DATA, rs2=draw(src), imm=off),)


def alu_items() -> st.SearchStrategy[tuple[int, ...]]:
    return weighted(
        (3, r_type()),
        (2, r_type(R_M)),
        (2, i_type()),
        (1, shift_imm()),
        (1, u_type()),
        (2, const_op()),
    )


def memory_items(*, misaligned: bool = True) -> st.SearchStrategy[tuple[int, ...]]:
    return weighted((1, load(misaligned=misaligned)), (1, store(misaligned=misaligned)))


# ---------------------------------------------------------------------------------------
# Control flow


@st.composite
def forward_skip(draw: st.DrawFn, inner: st.SearchStrategy[tuple[Atom, ...]]) -> tuple[Atom, ...]:
    """A branch (or jal) forward over 0..4 real items."""
    body = flatten(draw(st.lists(inner, max_size=4)))
    offset = 4 * (len(body) + 1)
    if draw(st.integers(0, 6)) == 0:
        head = encode("jal", rd=draw(dest), imm=offset)
    else:
        rs1 = draw(src)
        rs2 = draw(st.one_of(st.just(rs1), src))  # equal registers: always/never taken
        head = encode(draw(st.sampled_from(BRANCH_OPS)), rs1=rs1, rs2=rs2, imm=offset)
    return (head, *body)


@st.composite
def counted_loop(draw: st.DrawFn, inner: st.SearchStrategy[tuple[Atom, ...]]) -> tuple[Atom, ...]:
    """`x29 = n; do { body; x29 -= 1 } while (x29 != 0)` with n in 1..6: a bounded
    backward branch. The body never writes x29."""
    n = draw(st.integers(1, 6))
    body = flatten(draw(st.lists(inner, min_size=1, max_size=4)))
    back = -4 * (len(body) + 1)
    return (
        encode("addi", rd=REG_LOOP, imm=n),
        *body,
        encode("addi", rd=REG_LOOP, rs1=REG_LOOP, imm=-1),
        encode("bne", rs1=REG_LOOP, rs2=0, imm=back),
    )


# ---------------------------------------------------------------------------------------
# System: CSRs, traps, MMIO, self-modifying stores, timer interrupts

RW_CSRS = (Csr.MSCRATCH, Csr.MEPC, Csr.MINSTRET, Csr.MCYCLE, Csr.MINSTRETH, Csr.MCYCLEH)
RO_CSRS = (
    Csr.MHARTID,
    Csr.CYCLE,
    Csr.INSTRET,
    Csr.CYCLEH,
    Csr.INSTRETH,
    Csr.MISA,
    Csr.MSTATUS,
    Csr.MCAUSE,
    Csr.MTVAL,
    Csr.MIP,
)
# Traps as an illegal instruction: a write to a read-only CSR, or a CSR detfuzz lacks.
BAD_CSRS = (Csr.INSTRET, Csr.MHARTID, 0x7C0, 0x310)


@st.composite
def csr_item(draw: st.DrawFn) -> tuple[int]:
    kind = draw(st.integers(0, 5))
    if kind <= 2:  # read-modify-write of a writable CSR
        name = draw(st.sampled_from(("csrrw", "csrrs", "csrrc", "csrrwi", "csrrsi", "csrrci")))
        csr = int(draw(st.sampled_from(RW_CSRS)))
        if name.endswith("i"):
            return (encode(name, rd=draw(dest), imm=draw(st.integers(0, 31)), csr=csr),)
        return (encode(name, rd=draw(dest), rs1=draw(src), csr=csr),)
    if kind <= 4:  # a pure read (csrrs rd, csr, x0), allowed on read-only CSRs
        csr = int(draw(st.sampled_from(RW_CSRS + RO_CSRS)))
        return (encode("csrrs", rd=draw(dest), rs1=0, csr=csr),)
    csr = int(draw(st.sampled_from(BAD_CSRS)))
    return (encode("csrrw", rd=draw(dest), rs1=draw(src), csr=csr),)


trap_items = st.one_of(
    st.just((encode("ecall"),)),
    st.just((encode("ebreak"),)),
    st.sampled_from(ILLEGAL_WORDS).map(lambda w: (w,)),
    # any word with low bits != 0b11 is illegal without the C extension
    st.integers(0, MASK32).map(lambda w: (w & ~3 | 1,)),
)


@st.composite
def mmio_item(draw: st.DrawFn) -> tuple[int, ...]:
    kind = draw(st.integers(0, 2))
    if kind == 0:  # a byte to the UART transmit register
        return (encode("lui", rd=REG_T2, imm=UART_THR), encode("sb", rs1=REG_T2, rs2=draw(src)))
    hi = CLINT_MTIME + 0x8  # 0x200c000
    off = -8 if kind == 1 else -4  # mtime low / high word
    return (encode("lui", rd=REG_T2, imm=hi), encode("lw", rd=draw(dest), rs1=REG_T2, imm=off))


# Words a patch may write over an instruction: plain ALU operations mostly, sometimes a trap
# or an arbitrary word (which may decode to anything; the budget bounds the outcome).
patch_words = st.one_of(
    r_type().map(lambda t: t[0]),
    i_type().map(lambda t: t[0]),
    st.sampled_from((*ILLEGAL_WORDS, encode("ecall"), encode("addi"))),
    st.integers(0, MASK32),
)


# Well-formed replacements: ALU/M operations and data-page loads/stores, never writing x31.
plain_patch_words = st.one_of(
    r_type().map(lambda t: t[0]),
    i_type().map(lambda t: t[0]),
    shift_imm().map(lambda t: t[0]),
    load().map(lambda t: t[0]),
    store().map(lambda t: t[0]),
)


@st.composite
def patch_item(
    draw: st.DrawFn, *, fence_i: bool = False, well_formed: bool = False
) -> tuple[Atom, ...]:
    """Self-modifying code: store a word (or part of one) over an instruction of the body:
    the next one (rel 1, same block), the store itself (0), or any within +-100.

    `well_formed`: whole-word stores of `plain_patch_words` only, aimed at instructions
    outside patch sequences, each followed by `fence.i` if `fence_i` (so the program stays
    straight-line and its meaning architecturally defined)."""
    if well_formed:
        op, value, byte = "sw", draw(plain_patch_words), 0
    else:
        op = draw(st.sampled_from(("sw", "sw", "sh", "sb")))
        value = draw(patch_words)
        byte = 0 if op == "sw" else draw(st.sampled_from((0, 2) if op == "sh" else (0, 1, 2, 3)))
    rel = draw(st.one_of(st.sampled_from((1, 1, 2, 0, -1, -3)), st.integers(-100, 100)))
    if fence_i:
        rel += 1 if rel > 0 else 0  # count the fence.i as part of the sequence
    head: tuple[int, ...] = (*li(REG_T1, value), encode("auipc", rd=REG_T2, imm=0))
    tail: tuple[int, ...] = (encode("fence.i"),) if fence_i else ()
    if well_formed:
        return (*map(Pinned, head), Patch(op, rel, byte), *map(Pinned, tail))
    return (*head, Patch(op, rel, byte), *tail)


@st.composite
def timer_item(draw: st.DrawFn) -> tuple[int, ...]:
    """Arm the CLINT timer `delta` ticks ahead and enable the machine timer interrupt; the
    handler disables MTIE again when it fires (interrupts at icount-determined points)."""
    delta = draw(st.integers(0, 40))
    return (
        encode("lui", rd=REG_T2, imm=CLINT_MTIME + 8),
        encode("lw", rd=REG_T1, rs1=REG_T2, imm=-8),
        encode("addi", rd=REG_T1, rs1=REG_T1, imm=delta),
        encode("lui", rd=REG_T2, imm=CLINT_MTIMECMP),
        encode("sw", rs1=REG_T2, rs2=0, imm=4),
        encode("sw", rs1=REG_T2, rs2=REG_T1, imm=0),
        encode("addi", rd=REG_T1, imm=0x80),
        encode("csrrs", rs1=REG_T1, csr=Csr.MIE),
        encode("csrrsi", imm=8, csr=Csr.MSTATUS),
    )


misc_items = st.sampled_from(
    ((encode("fence"),), (encode("fence.i"),), (encode("addi"),))  # fence, fence.i, nop
)


def trap_handler() -> tuple[int, ...]:
    """At HANDLER_BASE: exceptions resume after the faulting instruction (mepc += 4);
    interrupts (mcause < 0) clear mie.MTIE and resume where they struck."""
    return (
        encode("csrrs", rd=REG_TRAP, csr=Csr.MCAUSE),
        encode("blt", rs1=REG_TRAP, rs2=0, imm=20),
        encode("csrrs", rd=REG_TRAP, csr=Csr.MEPC),
        encode("addi", rd=REG_TRAP, rs1=REG_TRAP, imm=4),
        encode("csrrw", rs1=REG_TRAP, csr=Csr.MEPC),
        encode("mret"),
        # irq:
        encode("addi", rd=REG_TRAP, imm=0x80),
        encode("csrrc", rs1=REG_TRAP, csr=Csr.MIE),
        encode("mret"),
    )


def finisher_tail() -> tuple[int, ...]:
    """Write pass to the sifive_test finisher, then spin in a self-loop."""
    return (
        encode("lui", rd=REG_T2, imm=FINISHER),
        *li(REG_T1, 0x5555),
        encode("sw", rs1=REG_T2, rs2=REG_T1),
        encode("jal", imm=0),
    )


# ---------------------------------------------------------------------------------------
# Whole programs


@st.composite
def initial_registers(draw: st.DrawFn) -> tuple[int, ...]:
    regs = [0] + [draw(values) for _ in range(31)]
    regs[REG_DATA] = DATA_PTR
    regs[REG_LOOP] = 0
    return tuple(regs)


data_pages = st.one_of(
    st.just(bytes(DATA_SIZE)),
    st.binary(min_size=64, max_size=64).map(lambda b: b * (DATA_SIZE // 64)),
    st.integers(0, 2**32).map(lambda seed: _prng_bytes(seed, DATA_SIZE)),
)


def _prng_bytes(seed: int, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def straight_simple(*, misaligned: bool) -> st.SearchStrategy[tuple[int, ...]]:
    """Items for the Unicorn differential test: ALU, M, loads and stores, no system."""
    return weighted((2, alu_items()), (1, memory_items(misaligned=misaligned)))


@st.composite
def straight_line_programs(
    draw: st.DrawFn, *, min_items: int = 100, max_items: int = 140, misaligned: bool = True
) -> Program:
    """Straight-line code with forward branches/jal only, ending in `jal x0, 0` at
    `Program.end`. Every item is at least one instruction, so code has >= min_items + 1."""
    simple = straight_simple(misaligned=misaligned)
    item = weighted((6, simple), (1, forward_skip(simple)))
    items = draw(st.lists(item, min_size=min_items, max_size=max_items))
    code = [*flatten(items), encode("jal", imm=0)]
    return Program(code=tuple(code), regs=draw(initial_registers()), data=draw(data_pages))


@st.composite
def self_modifying_programs(
    draw: st.DrawFn, *, fence_i: bool = True, min_items: int = 30, max_items: int = 80
) -> Program:
    """Straight-line programs (as `straight_line_programs`) in which about one item in five
    overwrites an instruction of the program, before or after it, with another plain one.
    With `fence_i` each patch is followed by `fence.i`, which makes the new word visible to
    any implementation (RISC-V requires it; detfuzz does not)."""
    simple = straight_simple(misaligned=True)
    item = weighted(
        (5, simple),
        (1, forward_skip(simple)),
        (2, patch_item(fence_i=fence_i, well_formed=True)),
    )
    items = draw(st.lists(item, min_size=min_items, max_size=max_items))
    atoms = flatten(items)
    code = [*resolve(atoms), encode("jal", imm=0)]
    return Program(code=tuple(code), regs=draw(initial_registers()), data=draw(data_pages))


def system_simple() -> st.SearchStrategy[tuple[Atom, ...]]:
    """Straight items for the block-vs-step property (no x29 writes, no branches)."""
    return weighted(
        (4, alu_items()),
        (3, memory_items()),
        (1, csr_item()),
        (1, trap_items),
        (1, mmio_item()),
        (1, patch_item()),
        (1, misc_items),
        (1, timer_item()),
    )


@st.composite
def guest_programs(
    draw: st.DrawFn, *, min_items: int = 10, max_items: int = 50, wfi: bool = True
) -> Program:
    """A program with everything the machine does: ALU/M, memory, forward branches, bounded
    loops, CSRs, traps through a handler, MMIO, self-modifying stores and timer
    interrupts; ending in a write of pass to the finisher and a self-loop."""
    simple = system_simple()
    # Loop bodies lean towards plain ALU/memory code: a body without block-ending
    # instructions is one self-looping translated block.
    plain = weighted((2, alu_items()), (1, memory_items()), (2, simple))
    choices = [(6, simple), (1, forward_skip(simple)), (1, counted_loop(plain))]
    if wfi and draw(st.integers(0, 9)) == 0:
        # WFI with nothing enabled stops the run (WFI_IDLE): only in a few programs.
        choices.append((1, st.just((encode("wfi"),))))
    items = draw(st.lists(weighted(*choices), min_size=min_items, max_size=max_items))
    atoms = flatten(items)
    code = resolve([*atoms, *finisher_tail()], body_len=len(atoms) or 1)
    return Program(
        code=tuple(code),
        regs=draw(initial_registers()),
        data=draw(data_pages),
        handler=trap_handler(),
        mscratch=draw(values),
        icount_shift=draw(st.sampled_from((0, 0, 3, 7, 10))),
    )


# ---------------------------------------------------------------------------------------
# Machines


def translate_eagerly(m: Machine) -> Machine:
    """Make the block path translate every block on its first entry.

    By default the machine interprets a block until it has been entered
    `m.hot_block_entries` times; the short programs of these tests would then rarely reach
    the translator. With 1, `run()` translates regions at once.
    """
    assert hasattr(m, "hot_block_entries"), "Machine lost its hot_block_entries knob"
    m.hot_block_entries = 1
    return m


def load_machine(program: Program, *, eager: bool = False, ram_size: int = RAM_SIZE) -> Machine:
    """A fresh machine holding `program`: code, handler (mtvec), data page, registers.
    With `eager`, the block path translates every block on first entry."""
    global _unreleased
    _unreleased += 1
    m = Machine(MachineConfig(ram_size=ram_size, icount_shift=program.icount_shift))
    if eager:
        translate_eagerly(m)
    m.bus.write_bytes(CODE_BASE, program.code_bytes)
    if program.handler:
        m.bus.write_bytes(HANDLER_BASE, words_bytes(program.handler))
        m.cpu.mtvec = HANDLER_BASE
    m.bus.write_bytes(DATA_PAGE, program.data)
    for i in range(1, 32):
        m.cpu.x[i] = program.regs[i] & MASK32
    m.cpu.mscratch = program.mscratch
    m.cpu.pc = CODE_BASE
    return m


_unreleased = 0  # machines built by load_machine since the last collection
RELEASE_EVERY = 40  # machines (~3 MiB each here) between collections


def release(machines: object) -> None:
    """Drop finished machines. A Machine is cyclic garbage (its bus and environment point
    back at it), so every dropped one keeps its RAM and page tables (~3 MiB here) until a
    full collection, and with Hypothesis's many live objects those come rarely: a long run
    balloons to gigabytes. A full collection costs time in proportion to the live objects,
    so collect once per RELEASE_EVERY machines rather than after every example."""
    global _unreleased
    del machines
    if _unreleased >= RELEASE_EVERY:
        _unreleased = 0
        gc.collect()


def machine_state(m: Machine) -> dict[str, object]:
    """Everything observable about a machine that the properties compare."""
    cpu = m.cpu
    clint = m.devices["clint"]
    return {
        "x": list(cpu.x),
        "pc": cpu.pc,
        "icount": cpu.icount,
        "nonretired": cpu.nonretired,
        "minstret64": cpu.minstret64(),
        "mcycle64": cpu.mcycle64(),
        "mstatus": cpu.csr_read(Csr.MSTATUS),
        "mepc": cpu.mepc,
        "mcause": cpu.mcause,
        "mtval": cpu.mtval,
        "mscratch": cpu.mscratch,
        "mtvec": cpu.mtvec,
        "mie": cpu.mie,
        "mip": cpu.mip,
        "halted": cpu.halted,
        "mtimecmp": clint.mtimecmp,  # type: ignore[attr-defined]
        "ram_sha256": hashlib.sha256(m.bus.ram).hexdigest(),
        "console": m.console_output(),
        "finisher_code": m.finisher_code,
    }


def state_diff(
    a: dict[str, object],
    b: dict[str, object],
    ram_a: bytes | bytearray | None = None,
    ram_b: bytes | bytearray | None = None,
) -> str:
    """A readable description of how two `machine_state`s differ ('' if they do not)."""
    out = []
    for key in a:
        if a[key] == b[key]:
            continue
        if key == "x":
            pairs = zip(a["x"], b["x"], strict=True)  # type: ignore[call-overload]
            regs = [f"x{i}: {va:#x} != {vb:#x}" for i, (va, vb) in enumerate(pairs) if va != vb]
            out.append("registers " + ", ".join(regs))
        elif key == "ram_sha256" and ram_a is not None and ram_b is not None:
            first = next(i for i in range(len(ram_a)) if ram_a[i] != ram_b[i])
            ours, theirs = bytes(ram_a[first : first + 8]), bytes(ram_b[first : first + 8])
            where = RAM_BASE + first
            out.append(f"RAM differs first at {where:#x}: {ours.hex()} != {theirs.hex()}")
        else:
            va, vb = a[key], b[key]
            if isinstance(va, int) and not isinstance(va, bool):
                out.append(f"{key}: {va:#x} != {vb:#x}")
            else:
                out.append(f"{key}: {va!r} != {vb!r}")
    return "; ".join(out)


# ---------------------------------------------------------------------------------------
# The reference: Unicorn (QEMU's RISC-V TCG), for straight-line programs

UnicornResult = tuple[list[int], int, bytes, int]


def run_unicorn(program: Program) -> UnicornResult:
    """(x0..x31, pc, RAM, instructions executed) after running `program` on Unicorn from
    CODE_BASE to its final self-loop (`until` = Program.end, not executed)."""
    from unicorn import UC_ARCH_RISCV, UC_HOOK_CODE, UC_MODE_RISCV32, Uc
    from unicorn.riscv_const import UC_RISCV_REG_PC, UC_RISCV_REG_X0

    uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV32)
    uc.mem_map(CODE_BASE, RAM_SIZE)
    uc.mem_write(CODE_BASE, program.code_bytes)
    uc.mem_write(DATA_PAGE, program.data)
    for i in range(1, 32):
        uc.reg_write(UC_RISCV_REG_X0 + i, program.regs[i] & MASK32)
    count = [0]

    def on_code(_uc: object, _address: int, _size: int, _data: object) -> None:
        count[0] += 1

    uc.hook_add(UC_HOOK_CODE, on_code)
    # A straight-line program executes each instruction at most once; the bound makes a
    # broken `until` fail instead of hang.
    uc.emu_start(CODE_BASE, program.end, count=len(program.code))
    regs = [uc.reg_read(UC_RISCV_REG_X0 + i) & MASK32 for i in range(32)]
    return regs, uc.reg_read(UC_RISCV_REG_PC), bytes(uc.mem_read(CODE_BASE, RAM_SIZE)), count[0]


def compare_with_unicorn(program: Program, name: str, m: Machine, ref: UnicornResult) -> None:
    """Assert detfuzz machine `m` holds Unicorn's registers, pc and whole RAM."""
    regs, pc, ram, _count = ref
    problems = []
    for i in range(32):
        if m.cpu.x[i] != regs[i]:
            problems.append(f"x{i}: detfuzz {m.cpu.x[i]:#010x} unicorn {regs[i]:#010x}")
    if m.cpu.pc != pc:
        problems.append(f"pc: detfuzz {m.cpu.pc:#x} unicorn {pc:#x}")
    ours = bytes(m.bus.ram[:RAM_SIZE])
    if ours != ram:
        first = next(i for i in range(RAM_SIZE) if ours[i] != ram[i])
        problems.append(
            f"RAM at {CODE_BASE + first:#x}: detfuzz {ours[first : first + 8].hex()} "
            f"unicorn {ram[first : first + 8].hex()}"
        )
    assert not problems, f"{name}: " + "; ".join(problems) + "\n" + program.listing()
