"""The interpreter: one pre-decoded closure per instruction, for cold code and single-steps.

Translating a region costs about a millisecond of `compile()`; a fuzzer's fresh program runs
each block only a few times, so the machine interprets a block until it has been entered
`HOT_BLOCK_ENTRIES` times and only then translates it (see `Machine.run`). Single-stepping
(`run(..., single_step=True)`) and the remainder of a budget that ends inside a block use the
interpreter too.

A step closure executes one instruction against a machine's environment (the same names the
region functions use: X, S, RB, ...) and returns the next pc; it raises `GuestTrap` with the
icount already right for the trap (counted or not, as the pinned rules say), and the caller
enters the trap. The instruction semantics (`ALU_EXPR`, `BRANCH_COND`, `LOADS`, `STORES`)
come from `vm.semantics`, the same templates the translator uses: per mnemonic, a closure
factory is compiled once per process, so building a step costs a function call, not a
`compile()`. That the interpreter and the translator agree is checked by property tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from vm.cpu import CsrOp
from vm.csr import Cause
from vm.isa import ENDS_BLOCK_NAMES, Insn, Kind, decode, illegal_tval, operands
from vm.semantics import ALU_EXPR, BRANCH_COND, LOADS, STORES, fill

MASK32 = 0xFFFF_FFFF
HOT_BLOCK_ENTRIES = 24

StepFn = Callable[[], int]
Factory = Callable[..., StepFn]

# The names of a machine's region environment that step closures use.
_ENV_NAMES = ("X", "S", "RB", "HW", "WD", "RF", "WF", "LOAD", "STORE", "CSRX", "WFI", "DIV", "REM")
_ENV_NAMES += ("GuestTrap",)


def _sign(expr: str, sign: int) -> str:
    return f"((({expr}) ^ {sign:#x}) - {sign:#x}) & 0xFFFFFFFF" if sign else expr


def _factory_source(insn: Insn) -> str:
    """Source of `factory(E, rd, rs1, rs2, imm, aux, pc, word)` returning a step closure.

    `aux` is the instruction-specific precomputed value: the biased immediate (slti), the
    auipc result, the branch/jal target. Counting rules: see vm/cpu.py.
    """
    name, kind = insn.name, insn.kind
    nxt = "nxt = (pc + 4) & 0xFFFFFFFF\n"
    if kind is Kind.ALU:
        expr = fill(
            ALU_EXPR[name],
            s1="X[rs1]",
            s2="X[rs2]",
            imm="imm",
            imm_biased="aux",
            uimm="imm",
            auipc="aux",
        )
        body = f"        X[rd] = {expr}\n        S.icount += 1\n        return nxt\n"
    elif kind is Kind.LOAD:
        size, fast, sign = LOADS[name]
        align = f" and not a & {size - 1}" if size > 1 else ""
        body = (
            "        a = (X[rs1] + imm) & 0xFFFFFFFF\n"
            f"        if RF[a >> 12]{align}:\n"
            f"            v = {_sign(fill(fast), sign)}\n"
            "        else:\n"
            "            S.icount += 1  # a device sees the accessing instruction counted\n"
            "            S.leave_block = True  # it may have raised an IRQ or moved a timer\n"
            "            try:\n"
            f"                v = {_sign(f'LOAD(a, {size})', sign)}\n"
            "            finally:\n"
            "                S.icount -= 1\n"
            "        if rd:\n"
            "            X[rd] = v\n"
            "        S.icount += 1\n"
            "        return nxt\n"
        )
    elif kind is Kind.STORE:
        size, target, mask = STORES[name]
        align = f" and not a & {size - 1}" if size > 1 else ""
        body = (
            "        a = (X[rs1] + imm) & 0xFFFFFFFF\n"
            f"        if WF[a >> 12]{align}:\n"
            f"            {fill(target)} = X[rs2] & {mask:#x}\n"
            "        else:\n"
            "            S.icount += 1\n"
            "            S.leave_block = True\n"
            "            try:\n"
            f"                STORE(a, {size}, X[rs2])\n"
            "            finally:\n"
            "                S.icount -= 1\n"
            "        S.icount += 1\n"
            "        return nxt\n"
        )
    elif kind is Kind.BRANCH:
        cond = fill(BRANCH_COND[name], s1="X[rs1]", s2="X[rs2]")
        body = (
            "        S.icount += 1\n"
            f"        if {cond}:\n"
            "            if aux & 3:\n"
            "                S.nonretired += 1\n"
            f"                raise GuestTrap({Cause.INSN_ADDR_MISALIGNED}, aux)\n"
            "            return aux\n"
            "        return nxt\n"
        )
    elif name == "jal":
        body = (
            "        S.icount += 1\n"
            "        if aux & 3:\n"
            "            S.nonretired += 1\n"
            f"            raise GuestTrap({Cause.INSN_ADDR_MISALIGNED}, aux)\n"
            "        if rd:\n"
            "            X[rd] = nxt\n"
            "        return aux\n"
        )
    elif name == "jalr":
        body = (
            "        S.icount += 1\n"
            "        j = (X[rs1] + imm) & 0xFFFFFFFE\n"
            "        if j & 2:\n"
            "            S.nonretired += 1\n"
            f"            raise GuestTrap({Cause.INSN_ADDR_MISALIGNED}, j)\n"
            "        if rd:\n"
            "            X[rd] = nxt\n"
            "        return j\n"
        )
    elif kind is Kind.CSR:
        immediate = name.endswith("i")
        op = {"csrrw": CsrOp.WRITE, "csrrs": CsrOp.SET, "csrrc": CsrOp.CLEAR}[
            name[:-1] if immediate else name
        ]
        value = "imm" if immediate else "X[rs1]"
        writes = "True" if op == CsrOp.WRITE else ("imm != 0" if immediate else "rs1 != 0")
        body = (
            f"        old = CSRX(aux, {op}, {value}, {writes}, word)\n"
            "        if rd:\n"
            "            X[rd] = old\n"
            "        S.icount += 1\n"
            "        return nxt\n"
        )
    elif name in ("ecall", "ebreak"):
        cause = Cause.ECALL_M if name == "ecall" else Cause.BREAKPOINT
        body = (
            "        S.icount += 1\n"
            "        S.nonretired += 1\n"
            f"        raise GuestTrap({cause}, 0)\n"
        )
    elif name == "mret":
        body = "        S.icount += 1\n        return S.mret()\n"
    elif name == "wfi":
        body = "        WFI()\n        S.icount += 1\n        return nxt\n"
    elif kind in (Kind.FENCE, Kind.SYSTEM):  # fence, fence.i
        body = "        S.icount += 1\n        return nxt\n"
    else:  # pragma: no cover - guarded by the table meta-test
        raise AssertionError(f"no interpreter semantics for {name}")
    # Bind only the environment names this body uses: the factory runs once per
    # instruction per machine, so its prologue is part of the cold-code cost.
    used = [name for name in _ENV_NAMES if re.search(rf"\b{name}\b", body)]
    prologue = "".join(f"    {name} = E[{name!r}]\n" for name in used)
    return (
        "def factory(E, rd, rs1, rs2, imm, aux, pc, word):\n"
        + prologue
        + "    "
        + nxt
        + "    def step():\n"
        + body
        + "    return step\n"
    )


_FACTORIES: dict[str, Factory] = {}


def factory_for(insn: Insn) -> Factory:
    """The compiled closure factory of a mnemonic (compiled on first use, then shared)."""
    factory = _FACTORIES.get(insn.name)
    if factory is None:
        namespace: dict[str, object] = {}
        exec(compile(_factory_source(insn), f"<step {insn.name}>", "exec"), namespace)
        factory = namespace["factory"]  # type: ignore[assignment]
        _FACTORIES[insn.name] = factory
    return factory


def _count_only(env: Mapping[str, object], pc: int) -> StepFn:
    """An ALU instruction writing x0: no effect but being counted."""
    cpu = env["S"]
    nxt = (pc + 4) & MASK32

    def step() -> int:
        cpu.icount += 1  # type: ignore[attr-defined]
        return nxt

    return step


def _illegal(env: Mapping[str, object], tval: int) -> StepFn:
    cpu = env["S"]
    guest_trap = env["GuestTrap"]

    def step() -> int:
        cpu.icount += 1  # type: ignore[attr-defined]  # illegal at decode: counted
        cpu.nonretired += 1  # type: ignore[attr-defined]
        raise guest_trap(Cause.ILLEGAL_INSN, tval)  # type: ignore[operator]

    return step


# What a step needs besides the machine, per (pc, word): shared by every machine, so a
# program run again on a fresh machine skips decoding. Bounded like the region cache.
Predecoded = tuple[Callable[..., StepFn], tuple[int, ...], bool]
_PREDECODED: dict[tuple[int, int], Predecoded] = {}
PREDECODED_LIMIT = 200_000


def predecode(pc: int, word: int) -> Predecoded:
    """(closure maker, its arguments, whether the instruction ends a block)."""
    key = (pc, word)
    entry = _PREDECODED.get(key)
    if entry is None:
        entry = _predecode(pc, word)
        if len(_PREDECODED) >= PREDECODED_LIMIT:
            _PREDECODED.clear()
        _PREDECODED[key] = entry
    return entry


def _predecode(pc: int, word: int) -> Predecoded:
    insn = decode(word)
    if insn is None:
        return _illegal, (illegal_tval(word),), True
    ops = operands(insn, word)
    ends = insn.name in ENDS_BLOCK_NAMES
    if insn.kind is Kind.ALU and ops.rd == 0:
        return _count_only, (pc,), ends
    imm = ops.imm & MASK32
    aux = 0
    if insn.name == "slti":
        aux = imm ^ 0x8000_0000
    elif insn.name == "auipc" or insn.kind is Kind.BRANCH or insn.name == "jal":
        aux = (pc + ops.imm) & MASK32
    elif insn.kind is Kind.CSR:
        aux = ops.csr
    return factory_for(insn), (ops.rd, ops.rs1, ops.rs2, imm, aux, pc, word), ends


def build_step(env: Mapping[str, object], pc: int, word: int) -> tuple[StepFn, bool]:
    """The step closure for the instruction `word` at `pc`, and whether it ends a block."""
    make, args, ends = predecode(pc, word)
    return make(env, *args), ends
