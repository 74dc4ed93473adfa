"""Translation of guest code regions into Python functions.

A *region* is a set of basic blocks reachable by static control flow from an entry pc
(branch targets, fall-throughs, `jal` targets). It becomes one Python function

    def region(L):   # L = icount limit; returns the next pc

whose guest registers live in locals for the whole region and whose blocks are dispatched
by a `while`/`if b == ...` chain, innermost loops first; small successors are inlined and a
block that loops to itself gets its own inner loop. Every block first checks that all of its
instructions fit below `L`; if not, the region returns at that block and the caller
interprets the rest, so a budget is met exactly. Any access that leaves the RAM fast path
(MMIO, a page that must be marked dirty or holds code, a misaligned access), any CSR
instruction, MRET, WFI, FENCE.I and every trap write the registers back and return: a
device therefore sees the exact icount of the instruction that touched it (that instruction
included), and an interrupt it raises is taken before the next instruction.

Compiled code is shared between machines: `compile_region` caches code objects by entry pc
and the exact instruction words of the region, and each machine binds them to its own
globals (`bind`), which costs about a microsecond. The interpreter (`vm.interp`) runs the
same semantics templates for cold code and single steps.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vm.cpu import CsrOp
from vm.csr import Cause
from vm.isa import ENDS_BLOCK, Insn, Kind, Operands, decode, illegal_tval, operands
from vm.semantics import ALU_EXPR, BRANCH_COND, LOADS, STORES, fill

MASK32 = 0xFFFF_FFFF
MAX_BLOCK_INSNS = 64
MAX_REGION_BLOCKS = 24
# Bounds compile() time (about 12 us per generated line) for large straight-line code.
MAX_REGION_INSNS = 384
# A bound on cached code objects: fuzz campaigns see an endless stream of fresh programs.
CODE_CACHE_LIMIT = 20_000

FetchFn = Callable[[int], "int | None"]


@dataclass(frozen=True, slots=True)
class DecodedInsn:
    pc: int
    word: int
    insn: Insn | None  # None: illegal at decode
    ops: Operands


@dataclass(frozen=True, slots=True)
class Block:
    """A straight-line run of instructions; only the last one may change control flow."""

    pc: int
    insns: tuple[DecodedInsn, ...]
    successors: tuple[int, ...]  # statically known next pcs (for region growth)

    @property
    def words(self) -> tuple[int, ...]:
        return tuple(d.word for d in self.insns)


def discover_block(
    fetch: FetchFn, pc: int, *, max_insns: int, stop_pcs: frozenset[int]
) -> Block | None:
    """Decode the block starting at `pc`; None if nothing can be fetched there."""
    insns: list[DecodedInsn] = []
    addr = pc
    while len(insns) < max_insns:
        if insns and addr in stop_pcs:
            break
        word = fetch(addr)
        if word is None:
            break
        insn = decode(word)
        ops = operands(insn, word) if insn is not None else Operands()
        insns.append(DecodedInsn(addr, word, insn, ops))
        addr = (addr + 4) & MASK32
        if insn is None or insn.kind in ENDS_BLOCK:
            break
    if not insns:
        return None
    return Block(pc, tuple(insns), _successors(insns[-1], addr))


def _successors(last: DecodedInsn, fallthrough: int) -> tuple[int, ...]:
    insn = last.insn
    if insn is None:
        return ()
    if insn.kind is Kind.BRANCH:
        target = (last.pc + last.ops.imm) & MASK32
        return (fallthrough, target) if not target & 3 else (fallthrough,)
    if insn.name == "jal":
        target = (last.pc + last.ops.imm) & MASK32
        return (target,) if not target & 3 else ()
    if insn.kind in ENDS_BLOCK:
        return ()  # dynamic, trapping or deliberately exiting
    return (fallthrough,)


def discover_region(
    fetch: FetchFn,
    entry: int,
    *,
    max_blocks: int = MAX_REGION_BLOCKS,
    max_block_insns: int = MAX_BLOCK_INSNS,
    stop_pcs: frozenset[int] = frozenset(),
) -> tuple[Block, ...]:
    """The entry block and the blocks statically reachable from it, breadth first."""
    first = discover_block(fetch, entry, max_insns=max_block_insns, stop_pcs=stop_pcs)
    if first is None:
        return ()
    blocks = {entry: first}
    insns = len(first.insns)
    queue = list(first.successors)
    while queue and len(blocks) < max_blocks:
        pc = queue.pop(0)
        if pc in blocks or pc in stop_pcs:
            continue
        block = discover_block(fetch, pc, max_insns=max_block_insns, stop_pcs=stop_pcs)
        if block is None or insns + len(block.insns) > MAX_REGION_INSNS:
            continue
        blocks[pc] = block
        insns += len(block.insns)
        queue.extend(block.successors)
    return tuple(blocks.values())


# ---------------------------------------------------------------------------------------
# Code generation


def _reg(n: int) -> str:
    return f"r{n}" if n else "0"


def _dest(n: int) -> str:
    return f"r{n}" if n else "_"


def _hex(value: int) -> str:
    return f"{value & MASK32:#x}"


def _sign(expr: str, sign: int) -> str:
    if not sign:
        return expr
    return f"(({expr}) ^ {sign:#x}) - {sign:#x} & 0xFFFFFFFF"


MAX_INLINE_DEPTH = 2
MAX_INLINE_INSNS = 16


class _RegionWriter:
    """Emits the source of one region function.

    Locals: `r1`..`r31` guest registers; `t` the instructions still allowed before the
    limit `L` (so the icount is always `L - t`, and counting down keeps `t` a small int);
    `b` the index of the next block to dispatch; `pc` only at exits (and before any helper
    that may trap, for mepc). A transfer to a block outside the region exits directly; a
    transfer inside either inlines the successor (small, not a loop head, shallow) or sets
    `b` and goes round the dispatch loop, whose chain lists loop bodies first.
    """

    def __init__(self, blocks: tuple[Block, ...], *, stop_pcs: frozenset[int]) -> None:
        # A transfer to a stop pc (a breakpoint) always leaves the region, even to itself.
        self.blocks = {block.pc: block for block in blocks}
        self.stop_pcs = stop_pcs
        self.entry = blocks[0].pc
        self.lines: list[str] = []
        self.read: set[int] = set()
        self.written: set[int] = set()
        self.back_edges = [
            (target, block.insns[-1].pc)
            for block in blocks
            for target in block.successors
            if target in self.blocks and target <= block.insns[-1].pc
        ]
        self.loop_heads = {target for target, _ in self.back_edges} | {self.entry}
        self.dispatch_index: dict[int, int] = {}
        self.pending: list[int] = []
        self.current = -1  # the dispatched block being emitted

    # -- emission helpers ---------------------------------------------------------------

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def use(self, *regs: int) -> None:
        self.read.update(r for r in regs if r)

    def define(self, reg: int) -> None:
        if reg:
            self.written.add(reg)

    # Placeholders resolved once a dispatched block's body is known (see `_resolve`).
    _EXIT = "@exit"
    _NEXT = "@next"
    _SELF = "@self"

    def exit_to(self, depth: int, pc: str) -> None:
        self.line(depth, f"pc = {pc}")
        self.line(depth, self._EXIT)

    def index(self, pc: int) -> int:
        if pc not in self.dispatch_index:
            self.dispatch_index[pc] = len(self.dispatch_index)
            self.pending.append(pc)
        return self.dispatch_index[pc]

    def transfer(self, depth: int, target: int, inline_depth: int) -> None:
        block = self.blocks.get(target)
        if block is None or target in self.stop_pcs:
            self.exit_to(depth, _hex(target))
        elif (
            inline_depth < MAX_INLINE_DEPTH
            and target not in self.loop_heads
            and len(block.insns) <= MAX_INLINE_INSNS
        ):
            self.block(depth, block, inline_depth + 1)
        elif target == self.current:
            self.line(depth, self._SELF)
        else:
            self.line(depth, f"b = {self.index(target)}")
            self.line(depth, self._NEXT)

    def _resolve(self, lines: list[str]) -> list[str]:
        """A block that transfers to itself runs in its own inner loop, saving a dispatch
        per iteration; its exits then leave both loops (b = -1 tells the outer one)."""
        looped = any(line.strip() == self._SELF for line in lines)
        words = (
            {self._EXIT: ("b = -1", "break"), self._NEXT: ("break",), self._SELF: ("continue",)}
            if looped
            else {self._EXIT: ("break",), self._NEXT: (), self._SELF: ()}
        )
        out = []
        for line in lines:
            stripped = line.strip()
            if stripped in words:
                indent = line[: len(line) - len(stripped)]
                out += [indent + word for word in words[stripped]]
            else:
                out.append(line)
        if looped:
            out = ["while True:", *("    " + line for line in out), "if b < 0:", "    break"]
        return out

    # -- blocks ---------------------------------------------------------------------------

    def block(self, depth: int, block: Block, inline_depth: int) -> None:
        n = len(block.insns)
        # Every instruction of the block must fit below the limit, or none runs here.
        self.line(depth, f"t -= {n}")
        self.line(depth, "if t < 0:")
        self.line(depth + 1, f"t += {n}")
        self.exit_to(depth + 1, _hex(block.pc))
        for k, d in enumerate(block.insns):
            if self.insn(depth, k, n, d, inline_depth):
                return
        self.transfer(depth, (block.insns[-1].pc + 4) & MASK32, inline_depth)

    def insn(self, depth: int, k: int, n: int, d: DecodedInsn, inline_depth: int) -> bool:
        """Emit instruction k of n; True if it ended the block (exit or transfer)."""
        insn, ops, pc = d.insn, d.ops, d.pc
        if insn is None:
            self.trap_counted(depth, k, n, pc, Cause.ILLEGAL_INSN, _hex(illegal_tval(d.word)))
            return True
        kind = insn.kind
        if kind is Kind.ALU:
            self.alu(depth, insn.name, ops, pc)
        elif kind is Kind.LOAD:
            self.load(depth, k, n, insn.name, ops, pc)
        elif kind is Kind.STORE:
            self.store(depth, k, n, insn.name, ops, pc)
        elif kind is Kind.FENCE:
            pass  # one hart, no caches to order: a no-op
        elif kind is Kind.BRANCH:
            self.branch(depth, insn.name, ops, pc, inline_depth)
            return True
        elif kind is Kind.JUMP:
            self.jump(depth, insn.name, ops, pc, inline_depth)
            return True
        elif kind is Kind.CSR:
            self.csr(depth, insn.name, ops, d)
            return True
        else:
            self.system(depth, k, n, insn.name, pc)
            return True
        return False

    def trap_counted(self, depth: int, k: int, n: int, pc: int, cause: int, tval: str) -> None:
        """A trap by instruction k that icount counts but that does not retire."""
        if n - k - 1:
            self.line(depth, f"t += {n - k - 1}")
        self.raise_counted(depth, pc, cause, tval)

    def raise_counted(self, depth: int, pc: int, cause: int, tval: str) -> None:
        self.line(depth, f"pc = {pc:#x}")
        self.line(depth, "S.nonretired += 1")
        self.line(depth, f"raise GuestTrap({cause}, {tval})")

    def slow_access(self, depth: int, k: int, n: int, pc: int, call: str) -> None:
        """Leave the fast path: the helper sees the icount including this instruction; if
        it traps, the except clause sees the count without it; else the region exits."""
        self.line(depth, f"t += {n - k}")
        self.line(depth, f"pc = {pc:#x}")
        self.line(depth, "S.icount = L - t + 1")
        self.line(depth, call)
        self.line(depth, "t -= 1")
        self.exit_to(depth, _hex(pc + 4))

    # -- instruction kinds ----------------------------------------------------------------

    def alu(self, depth: int, name: str, ops: Operands, pc: int) -> None:
        if not ops.rd:
            return  # writes to x0 vanish and ALU instructions have no side effects
        self.use(ops.rs1, ops.rs2)
        self.define(ops.rd)
        dest = _dest(ops.rd)
        imm = ops.imm & MASK32
        if name == "addi" and imm == 0:
            self.line(depth, f"{dest} = {_reg(ops.rs1)}")  # mv (or li 0)
            return
        if name in ("addi", "ori", "xori") and ops.rs1 == 0:
            self.line(depth, f"{dest} = {_hex(ops.imm)}")  # li
            return
        if name == "addi" and imm & 0x8000_0000:
            # Subtracting keeps the intermediate below 2**32: cheaper ints in CPython.
            self.line(depth, f"{dest} = (r{ops.rs1} - {(-imm) & MASK32:#x}) & 0xFFFFFFFF")
            return
        expr = fill(
            ALU_EXPR[name],
            s1=_reg(ops.rs1),
            s2=_reg(ops.rs2),
            imm=f"{imm:#x}",
            imm_biased=f"{imm ^ 0x8000_0000:#x}",
            uimm=_hex(ops.imm),
            auipc=_hex(pc + ops.imm),
        )
        self.line(depth, f"{dest} = {expr}")

    def _address(self, depth: int, ops: Operands) -> None:
        self.use(ops.rs1)
        imm = ops.imm & MASK32
        if ops.rs1 == 0:
            self.line(depth, f"a = {imm:#x}")
        elif imm == 0:
            self.line(depth, f"a = r{ops.rs1}")
        elif imm & 0x8000_0000:
            self.line(depth, f"a = (r{ops.rs1} - {(-imm) & MASK32:#x}) & 0xFFFFFFFF")
        else:
            self.line(depth, f"a = (r{ops.rs1} + {imm:#x}) & 0xFFFFFFFF")

    def load(self, depth: int, k: int, n: int, name: str, ops: Operands, pc: int) -> None:
        size, fast, sign = LOADS[name]
        self._address(depth, ops)
        self.define(ops.rd)
        dest = _dest(ops.rd)
        align = f" and not a & {size - 1}" if size > 1 else ""
        self.line(depth, f"if RF[a >> 12]{align}:")
        self.line(depth + 1, f"{dest} = " + _sign(fill(fast), sign))
        self.line(depth, "else:")
        self.slow_access(depth + 1, k, n, pc, f"{dest} = " + _sign(f"LOAD(a, {size})", sign))

    def store(self, depth: int, k: int, n: int, name: str, ops: Operands, pc: int) -> None:
        size, target, mask = STORES[name]
        self._address(depth, ops)
        self.use(ops.rs2)
        value = _reg(ops.rs2)
        if mask != MASK32 and ops.rs2:
            value = f"{value} & {mask:#x}"
        align = f" and not a & {size - 1}" if size > 1 else ""
        self.line(depth, f"if WF[a >> 12]{align}:")
        self.line(depth + 1, f"{fill(target)} = {value}")
        self.line(depth, "else:")
        self.slow_access(depth + 1, k, n, pc, f"STORE(a, {size}, {_reg(ops.rs2)})")

    def branch(self, depth: int, name: str, ops: Operands, pc: int, inline_depth: int) -> None:
        self.use(ops.rs1, ops.rs2)
        target = (pc + ops.imm) & MASK32
        self.line(depth, f"if {fill(BRANCH_COND[name], s1=_reg(ops.rs1), s2=_reg(ops.rs2))}:")
        if target & 3:
            self.raise_counted(depth + 1, pc, Cause.INSN_ADDR_MISALIGNED, _hex(target))
        else:
            self.transfer(depth + 1, target, inline_depth)
        self.line(depth, "else:")
        self.transfer(depth + 1, (pc + 4) & MASK32, inline_depth)

    def jump(self, depth: int, name: str, ops: Operands, pc: int, inline_depth: int) -> None:
        link = _hex(pc + 4)
        if name == "jal":
            target = (pc + ops.imm) & MASK32
            if target & 3:
                self.raise_counted(depth, pc, Cause.INSN_ADDR_MISALIGNED, _hex(target))
                return
            self.define(ops.rd)
            if ops.rd:
                self.line(depth, f"r{ops.rd} = {link}")
            self.transfer(depth, target, inline_depth)
            return
        self.use(ops.rs1)
        self.line(depth, f"j = ({_reg(ops.rs1)} + {ops.imm & MASK32:#x}) & 0xFFFFFFFE")
        self.line(depth, "if j & 2:")
        self.raise_counted(depth + 1, pc, Cause.INSN_ADDR_MISALIGNED, "j")
        self.define(ops.rd)
        if ops.rd:
            self.line(depth, f"r{ops.rd} = {link}")
        self.exit_to(depth, "j")

    def csr(self, depth: int, name: str, ops: Operands, d: DecodedInsn) -> None:
        immediate = name.endswith("i")
        op = {"csrrw": CsrOp.WRITE, "csrrs": CsrOp.SET, "csrrc": CsrOp.CLEAR}[
            name[:-1] if immediate else name
        ]
        if immediate:
            value = f"{ops.imm}"
            writes = op == CsrOp.WRITE or ops.imm != 0
        else:
            self.use(ops.rs1)
            value = _reg(ops.rs1)
            writes = op == CsrOp.WRITE or ops.rs1 != 0
        self.define(ops.rd)
        # Counters read the count *before* this instruction, which is also what the
        # except clause must see if the access is illegal (it does not count).
        self.line(depth, "t += 1")
        self.line(depth, f"pc = {d.pc:#x}")
        self.line(depth, "S.icount = L - t")
        call = f"CSRX({ops.csr:#x}, {op}, {value}, {writes}, {d.word:#x})"
        self.line(depth, f"{_dest(ops.rd)} = {call}")
        self.line(depth, "t -= 1")
        self.exit_to(depth, _hex(d.pc + 4))

    def system(self, depth: int, k: int, n: int, name: str, pc: int) -> None:
        nxt = _hex(pc + 4)
        if name == "ecall":
            self.trap_counted(depth, k, n, pc, Cause.ECALL_M, "0")
        elif name == "ebreak":
            self.trap_counted(depth, k, n, pc, Cause.BREAKPOINT, "0")
        elif name == "mret":
            self.exit_to(depth, "S.mret()")
        elif name == "wfi":
            self.line(depth, "WFI()")
            self.exit_to(depth, nxt)
        elif name == "fence.i":
            self.exit_to(depth, nxt)
        else:  # pragma: no cover - guarded by the table meta-test
            raise AssertionError(f"no semantics for {name}")

    # -- the function ---------------------------------------------------------------------

    def loop_depth(self, pc: int) -> int:
        return sum(1 for target, source in self.back_edges if target <= pc <= source)

    def source(self) -> str:
        bodies: dict[int, list[str]] = {}
        self.index(self.entry)
        while self.pending:
            pc = self.pending.pop()
            self.lines = []
            self.current = pc
            self.block(0, self.blocks[pc], 0)
            bodies[pc] = self._resolve(self.lines)
        # Innermost loop bodies first: the chain is walked on every dispatch.
        order = sorted(bodies, key=lambda pc: (-self.loop_depth(pc), pc))
        out = ["def region(L):"]
        out += [f"    r{r} = X[{r}]" for r in sorted(self.read | self.written)]
        out += ["    t = L - S.icount", f"    b = {self.dispatch_index[self.entry]}", "    try:"]
        out.append("        while True:")
        for position, pc in enumerate(order):
            keyword = "if" if position == 0 else "elif"
            out.append(f"            {keyword} b == {self.dispatch_index[pc]}:  # {pc:#x}")
            out += ["                " + line for line in bodies[pc]]
        stores = [f"X[{r}] = r{r}" for r in sorted(self.written)]
        out.append("    except GuestTrap as e:")
        out += [f"        {s}" for s in stores]
        out += ["        S.icount = L - t", "        return ENTER(e.cause, e.tval, pc)"]
        out += [f"    {s}" for s in stores]
        out += ["    S.icount = L - t", "    return pc"]
        return "\n".join(out) + "\n"


def generate_source(blocks: tuple[Block, ...], *, stop_pcs: frozenset[int] = frozenset()) -> str:
    """The Python source of `def region(L)` for `blocks` (the first is the entry)."""
    if not blocks:
        raise ValueError("a region needs at least one block")
    return _RegionWriter(blocks, stop_pcs=stop_pcs).source()


# ---------------------------------------------------------------------------------------
# Shared code cache

RegionKey = tuple[tuple[int, tuple[int, ...]], ...]
_CODE_CACHE: dict[tuple[RegionKey, frozenset[int]], types.CodeType] = {}


def region_key(blocks: Iterable[Block]) -> RegionKey:
    return tuple((b.pc, b.words) for b in blocks)


def compile_region(
    blocks: tuple[Block, ...], *, stop_pcs: frozenset[int] = frozenset()
) -> types.CodeType:
    """The code object of the region function, shared by every machine running these words."""
    key = (region_key(blocks), stop_pcs)
    code = _CODE_CACHE.get(key)
    if code is None:
        source = generate_source(blocks, stop_pcs=stop_pcs)
        namespace: dict[str, object] = {}
        exec(compile(source, f"<region {blocks[0].pc:#010x}>", "exec"), namespace)
        code = namespace["region"].__code__  # type: ignore[attr-defined]
        if len(_CODE_CACHE) >= CODE_CACHE_LIMIT:
            _CODE_CACHE.clear()
        _CODE_CACHE[key] = code
    return code


def bind(code: types.CodeType, env: dict[str, object]) -> Callable[[int], int]:
    """A region function running `code` against one machine's globals `env`."""
    return types.FunctionType(code, env)  # type: ignore[return-value]


def clear_code_cache() -> None:
    _CODE_CACHE.clear()
