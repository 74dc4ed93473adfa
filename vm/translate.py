"""Translation of guest code regions into Python functions.

A *region* is a set of basic blocks reachable by static control flow from an entry pc
(branch targets, fall-throughs, `jal` targets). It becomes one Python function

    def region(L):   # L = icount limit; returns the next pc

whose guest registers live in locals for the whole region and whose blocks are dispatched
by a `while`/`if pc == ...` chain. Every block first checks that all of its instructions fit
below `L`; if not, the region returns at that block and the caller single-steps the rest,
so a budget is met exactly. Any access that leaves the RAM fast path (MMIO, a page that
must be marked dirty or holds code, a misaligned access), any CSR instruction, MRET, WFI,
FENCE.I and every trap write the registers back and return: a device therefore sees the
exact icount of the instruction that touched it (that instruction included), and an
interrupt it raises is taken before the next instruction.

Compiled code is shared between machines: `compile_region` caches code objects by entry pc
and the exact instruction words of the region, and each machine binds them to its own
globals (`bind`), which costs about a microsecond. The single-step path (`max_blocks=1,
max_block_insns=1`) is generated from the same templates.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vm.csr import Cause
from vm.isa import Insn, Kind, Operands, decode, operands
from vm.semantics import ALU_EXPR, BRANCH_COND, LOADS, STORES, fill

MASK32 = 0xFFFF_FFFF
MAX_BLOCK_INSNS = 64
MAX_REGION_BLOCKS = 24
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


_ENDS_BLOCK = frozenset({Kind.BRANCH, Kind.JUMP, Kind.SYSTEM, Kind.CSR})


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
        if insn is None or insn.kind in _ENDS_BLOCK:
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
    if insn.kind in _ENDS_BLOCK:
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
    queue = list(first.successors)
    while queue and len(blocks) < max_blocks:
        pc = queue.pop(0)
        if pc in blocks or pc in stop_pcs:
            continue
        block = discover_block(fetch, pc, max_insns=max_block_insns, stop_pcs=stop_pcs)
        if block is None:
            continue
        blocks[pc] = block
        queue.extend(block.successors)
    return tuple(blocks.values())


# ---------------------------------------------------------------------------------------
# Code generation


def _reg(n: int) -> str:
    return f"r{n}" if n else "0"


def _dest(n: int) -> str:
    return f"r{n}" if n else "_"


class _RegionWriter:
    """Emits the source of one region function."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.read: set[int] = set()
        self.written: set[int] = set()

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def use(self, *regs: int) -> None:
        self.read.update(r for r in regs if r)

    def define(self, reg: int) -> None:
        if reg:
            self.written.add(reg)

    # -- instructions -----------------------------------------------------------------

    def exit_after(self, depth: int, k: int, next_pc: str) -> None:
        """Leave the region after instruction k of the block (it has completed)."""
        self.line(depth, f"ic += {k + 1}")
        self.line(depth, f"pc = {next_pc}")
        self.line(depth, "break")

    def trap_counted(self, depth: int, k: int, pc: int, cause: int, tval: str) -> None:
        """A trap by an instruction that icount counts but that does not retire."""
        self.line(depth, f"ic += {k + 1}")
        self.line(depth, f"pc = {pc:#x}")
        self.line(depth, "S.nonretired += 1")
        self.line(depth, f"raise GuestTrap({cause}, {tval})")

    def slow_prologue(self, depth: int, k: int, pc: int) -> None:
        """Before a helper that may fault or reach a device: icount as a device sees it."""
        self.line(depth, f"ic += {k}")
        self.line(depth, f"pc = {pc:#x}")
        self.line(depth, "S.icount = ic + 1")

    def insn(self, depth: int, k: int, d: DecodedInsn, *, fallthrough: int) -> bool:
        """Emit instruction k; return True if it already ended the block (exit or transfer)."""
        insn, ops, pc = d.insn, d.ops, d.pc
        if insn is None:
            self.trap_counted(depth, k, pc, Cause.ILLEGAL_INSN, f"{d.word:#x}")
            return True
        name = insn.name
        kind = insn.kind
        if kind is Kind.ALU:
            self.alu(depth, name, ops, pc)
        elif kind is Kind.LOAD:
            self.load(depth, k, name, ops, pc)
        elif kind is Kind.STORE:
            self.store(depth, k, name, ops, pc)
        elif kind is Kind.FENCE:
            pass  # one hart, no caches to order: a no-op
        elif kind is Kind.BRANCH:
            self.branch(depth, k, name, ops, pc, fallthrough)
            return True
        elif kind is Kind.JUMP:
            self.jump(depth, k, name, ops, pc)
            return True
        elif kind is Kind.CSR:
            self.csr(depth, k, name, ops, d)
            return True
        else:
            self.system(depth, k, name, pc)
            return True
        return False

    def alu(self, depth: int, name: str, ops: Operands, pc: int) -> None:
        if not ops.rd:
            return  # writes to x0 vanish and ALU instructions have no side effects
        self.use(ops.rs1, ops.rs2)
        self.define(ops.rd)
        imm = ops.imm & MASK32
        expr = fill(
            ALU_EXPR[name],
            s1=_reg(ops.rs1),
            s2=_reg(ops.rs2),
            imm=f"{imm:#x}",
            imm_biased=f"{imm ^ 0x8000_0000:#x}",
            uimm=f"{ops.imm:#x}",
            auipc=f"{(pc + ops.imm) & MASK32:#x}",
        )
        self.line(depth, f"{_dest(ops.rd)} = {expr}")

    def _address(self, depth: int, ops: Operands) -> None:
        self.use(ops.rs1)
        imm = ops.imm & MASK32
        if ops.rs1 == 0:
            self.line(depth, f"a = {imm:#x}")
        elif imm == 0:
            self.line(depth, f"a = r{ops.rs1}")
        else:
            self.line(depth, f"a = (r{ops.rs1} + {imm:#x}) & 0xFFFFFFFF")

    def load(self, depth: int, k: int, name: str, ops: Operands, pc: int) -> None:
        size, fast, sign = LOADS[name]
        self._address(depth, ops)
        self.define(ops.rd)
        dest = _dest(ops.rd)
        align = f" and not a & {size - 1}" if size > 1 else ""
        self.line(depth, f"if RF[a >> 12]{align}:")
        self.line(depth + 1, f"{dest} = " + _sign(fill(fast), sign))
        self.line(depth, "else:")
        self.slow_prologue(depth + 1, k, pc)
        self.line(depth + 1, f"{dest} = " + _sign(f"LOAD(a, {size})", sign))
        self.exit_after(depth + 1, 0, f"{(pc + 4) & MASK32:#x}")

    def store(self, depth: int, k: int, name: str, ops: Operands, pc: int) -> None:
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
        self.slow_prologue(depth + 1, k, pc)
        self.line(depth + 1, f"STORE(a, {size}, {_reg(ops.rs2)})")
        self.exit_after(depth + 1, 0, f"{(pc + 4) & MASK32:#x}")

    def branch(
        self, depth: int, k: int, name: str, ops: Operands, pc: int, fallthrough: int
    ) -> None:
        self.use(ops.rs1, ops.rs2)
        target = (pc + ops.imm) & MASK32
        cond = fill(BRANCH_COND[name], s1=_reg(ops.rs1), s2=_reg(ops.rs2))
        self.line(depth, f"ic += {k + 1}")
        self.line(depth, f"if {cond}:")
        if target & 3:
            self.trap_counted_here(depth + 1, pc, Cause.INSN_ADDR_MISALIGNED, f"{target:#x}")
        else:
            self.line(depth + 1, f"pc = {target:#x}")
        self.line(depth, "else:")
        self.line(depth + 1, f"pc = {fallthrough:#x}")

    def trap_counted_here(self, depth: int, pc: int, cause: int, tval: str) -> None:
        """As trap_counted, when `ic` already includes the instruction."""
        self.line(depth, f"pc = {pc:#x}")
        self.line(depth, "S.nonretired += 1")
        self.line(depth, f"raise GuestTrap({cause}, {tval})")

    def jump(self, depth: int, k: int, name: str, ops: Operands, pc: int) -> None:
        link = f"{(pc + 4) & MASK32:#x}"
        self.line(depth, f"ic += {k + 1}")
        if name == "jal":
            target = (pc + ops.imm) & MASK32
            if target & 3:
                self.trap_counted_here(depth, pc, Cause.INSN_ADDR_MISALIGNED, f"{target:#x}")
                return
            self.define(ops.rd)
            if ops.rd:
                self.line(depth, f"r{ops.rd} = {link}")
            self.line(depth, f"pc = {target:#x}")
            return
        self.use(ops.rs1)
        imm = ops.imm & MASK32
        self.line(depth, f"t = ({_reg(ops.rs1)} + {imm:#x}) & 0xFFFFFFFE")
        self.line(depth, "if t & 2:")
        self.trap_counted_here(depth + 1, pc, Cause.INSN_ADDR_MISALIGNED, "t")
        self.define(ops.rd)
        if ops.rd:
            self.line(depth, f"r{ops.rd} = {link}")
        self.line(depth, "pc = t")

    def csr(self, depth: int, k: int, name: str, ops: Operands, d: DecodedInsn) -> None:
        immediate = name.endswith("i")
        op = {"csrrw": 0, "csrrs": 1, "csrrc": 2}[name.rstrip("i") if immediate else name]
        if immediate:
            value = f"{ops.imm}"
            writes = op == 0 or ops.imm != 0
        else:
            self.use(ops.rs1)
            value = _reg(ops.rs1)
            writes = op == 0 or ops.rs1 != 0
        self.define(ops.rd)
        self.line(depth, f"ic += {k}")
        self.line(depth, f"pc = {d.pc:#x}")
        self.line(depth, "S.icount = ic")  # counters read the count before this instruction
        self.line(
            depth, f"{_dest(ops.rd)} = CSRX({ops.csr:#x}, {op}, {value}, {writes}, {d.word:#x})"
        )
        self.exit_after(depth, 0, f"{(d.pc + 4) & MASK32:#x}")

    def system(self, depth: int, k: int, name: str, pc: int) -> None:
        nxt = f"{(pc + 4) & MASK32:#x}"
        if name == "ecall":
            self.trap_counted(depth, k, pc, Cause.ECALL_M, "0")
        elif name == "ebreak":
            self.trap_counted(depth, k, pc, Cause.BREAKPOINT, "0")
        elif name == "mret":
            self.line(depth, f"ic += {k + 1}")
            self.line(depth, "pc = S.mret()")
            self.line(depth, "break")
        elif name == "wfi":
            self.line(depth, "WFI()")
            self.exit_after(depth, k, nxt)
        elif name == "fence.i":
            self.exit_after(depth, k, nxt)
        else:  # pragma: no cover - guarded by the table meta-test
            raise AssertionError(f"no semantics for {name}")


def _sign(expr: str, sign: int) -> str:
    if not sign:
        return expr
    return f"(({expr}) ^ {sign:#x}) - {sign:#x} & 0xFFFFFFFF"


def generate_source(blocks: Iterable[Block]) -> str:
    """The Python source of `def region(L)` for `blocks` (the first is the entry)."""
    w = _RegionWriter()
    body_start = len(w.lines)
    first = True
    for block in blocks:
        w.line(2, f"{'if' if first else 'elif'} pc == {block.pc:#x}:")
        first = False
        n = len(block.insns)
        w.line(3, f"if ic + {n} > L:")
        w.line(4, "break")
        ended = False
        for k, d in enumerate(block.insns):
            ended = w.insn(3, k, d, fallthrough=(d.pc + 4) & MASK32)
        if not ended:
            w.line(3, f"ic += {n}")
            w.line(3, f"pc = {(block.insns[-1].pc + 4) & MASK32:#x}")
    w.line(2, "else:")
    w.line(3, "break")
    body = ["    " + line for line in w.lines[body_start:]]  # inside try: while True:
    used = sorted(w.read | w.written)
    loads = [f"    r{r} = X[{r}]" for r in used]
    stores = [f"X[{r}] = r{r}" for r in sorted(w.written)]
    entry = blocks_entry(blocks)
    head = ["def region(L):", *loads, "    ic = S.icount", f"    pc = {entry:#x}", "    try:"]
    head.append("        while True:")
    tail = ["    except GuestTrap as t:"]
    tail += [f"        {s}" for s in stores]
    tail += ["        S.icount = ic", "        return ENTER(t.cause, t.tval, pc)"]
    tail += [f"    {s}" for s in stores]
    tail += ["    S.icount = ic", "    return pc"]
    return "\n".join([*head, *body, *tail]) + "\n"


def blocks_entry(blocks: Iterable[Block]) -> int:
    for block in blocks:
        return block.pc
    raise ValueError("a region needs at least one block")


# ---------------------------------------------------------------------------------------
# Shared code cache

RegionKey = tuple[tuple[int, tuple[int, ...]], ...]
_CODE_CACHE: dict[RegionKey, types.CodeType] = {}


def region_key(blocks: Iterable[Block]) -> RegionKey:
    return tuple((b.pc, b.words) for b in blocks)


def compile_region(blocks: tuple[Block, ...]) -> types.CodeType:
    """The code object of the region function, shared by every machine running these words."""
    key = region_key(blocks)
    code = _CODE_CACHE.get(key)
    if code is None:
        source = generate_source(blocks)
        namespace: dict[str, object] = {}
        exec(compile(source, f"<region {blocks[0].pc:#010x}>", "exec"), namespace)  # noqa: S102
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
