"""Small shared helpers for the unit tier: build a machine, put code in RAM, run it.

Programs are written straight into RAM at 0x8000_0000 and the pc set there, so the icount
starts at 0 (no reset vector). `wfi` with nothing enabled in `mie` stops a run with
WFI_IDLE, which makes it the cheapest "halt" for a test program.

The machine has three ways to execute the same instructions, and the helpers can pick each
(`mode`): "interpreted" (the default block path: cold code is interpreted block by block),
"translated" (the block path with translation on first entry, so even short test programs
run as translated regions) and "single-step" (`run(..., single_step=True)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vm import Machine, MachineConfig, RunResult, StopReason
from vm.asm import assemble, encode
from vm.interp import HOT_BLOCK_ENTRIES
from vm.isa import ABI_NAMES

RAM_BASE = 0x8000_0000
SMALL_RAM = 64 << 10
MASK32 = 0xFFFF_FFFF
INT_MIN = 0x8000_0000
INT_MAX = 0x7FFF_FFFF

FINISHER = 0x0010_0000
CLINT = 0x0200_0000
CLINT_MSIP = CLINT
CLINT_MTIMECMP = CLINT + 0x4000
CLINT_MTIME = CLINT + 0xBFF8
UART0 = 0x1000_0000
ROM_BASE = 0x1000

# A trap handler that just halts (`wfi` with mie == 0 stops the run with WFI_IDLE), placed
# near the end of the small RAM so that programs at RAM_BASE never reach it by accident.
HANDLER = RAM_BASE + 0xF000

WFI = encode("wfi")
NOP = encode("addi")

REG: dict[str, int] = {name: i for i, name in enumerate(ABI_NAMES)}
REG.update({f"x{i}": i for i in range(32)})
REG["fp"] = 8


MODES = ("interpreted", "translated", "single-step")


def run_mode(m: Machine, budget: int, mode: str = "interpreted") -> RunResult:
    """`m.run(budget)` in one of the three execution modes ("translated" translates every
    block on its first entry instead of after `HOT_BLOCK_ENTRIES` interpreted entries)."""
    assert mode in MODES, mode
    m.hot_block_entries = 1 if mode == "translated" else HOT_BLOCK_ENTRIES
    return m.run(budget, single_step=mode == "single-step")


def u32(value: int) -> int:
    return value & MASK32


def s32(value: int) -> int:
    value &= MASK32
    return value - (1 << 32) if value & INT_MIN else value


def words_to_bytes(words: Iterable[int]) -> bytes:
    return b"".join((w & MASK32).to_bytes(4, "little") for w in words)


def new_machine(*, ram_size: int = SMALL_RAM, shift: int = 0) -> Machine:
    return Machine(MachineConfig(ram_size=ram_size, icount_shift=shift))


def _image(code: str | bytes | Iterable[int], base: int) -> bytes:
    if isinstance(code, str):
        return assemble(code, base=base)
    if isinstance(code, bytes | bytearray):
        return bytes(code)
    return words_to_bytes(code)


def load_code(
    code: str | bytes | Iterable[int],
    *,
    regs: Mapping[str | int, int] | None = None,
    handler: bool = True,
    base: int = RAM_BASE,
    ram_size: int = SMALL_RAM,
    shift: int = 0,
) -> Machine:
    """A fresh machine with `code` (assembly text, bytes or words) at `base`, pc there.

    With `handler`, mtvec points at HANDLER, which holds a `wfi` (halts the run).
    """
    m = new_machine(ram_size=ram_size, shift=shift)
    m.bus.write_bytes(base, _image(code, base))
    if handler:
        m.bus.write_bytes(HANDLER, words_to_bytes([WFI]))
        m.cpu.mtvec = HANDLER
    for name, value in (regs or {}).items():
        index = REG[name] if isinstance(name, str) else name
        assert index != 0, "x0 cannot be preset"
        m.cpu.x[index] = value & MASK32
    m.cpu.pc = base
    return m


class Ran:
    """A machine plus the result of the run that stopped it."""

    def __init__(self, machine: Machine, result: RunResult) -> None:
        self.m = machine
        self.result = result

    @property
    def cpu(self):  # type: ignore[no-untyped-def]
        return self.m.cpu

    @property
    def reason(self) -> StopReason:
        return self.result.reason

    def x(self, name: str | int) -> int:
        return self.m.cpu.x[REG[name] if isinstance(name, str) else name]


def run_asm(
    code: str | bytes | Iterable[int],
    budget: int = 10_000,
    *,
    mode: str = "interpreted",
    regs: Mapping[str | int, int] | None = None,
    handler: bool = True,
    ram_size: int = SMALL_RAM,
    shift: int = 0,
) -> Ran:
    """Load `code` at RAM_BASE and run it for at most `budget` instructions."""
    m = load_code(code, regs=regs, handler=handler, ram_size=ram_size, shift=shift)
    return Ran(m, run_mode(m, budget, mode))


def run_to_wfi(code: str | bytes | Iterable[int], budget: int = 10_000, **kwargs) -> Ran:  # type: ignore[no-untyped-def]
    """Run a program that ends in `wfi` (or traps to HANDLER) and check it got there."""
    ran = run_asm(code, budget, **kwargs)
    assert ran.reason is StopReason.WFI_IDLE, (ran.result, hex(ran.cpu.pc))
    return ran


def trapped(ran: Ran) -> bool:
    """True when the run stopped in the HANDLER's wfi."""
    return ran.reason is StopReason.WFI_IDLE and ran.cpu.pc == HANDLER + 4


def state(m: Machine) -> tuple:  # type: ignore[type-arg]
    """Everything architecturally visible that these tests compare between runs."""
    c = m.cpu
    return (
        tuple(c.x),
        c.pc,
        c.icount,
        c.retired,
        c.mstatus,
        c.mie,
        c.mip,
        c.mtvec,
        c.mepc,
        c.mcause,
        c.mtval,
        c.mscratch,
        c.minstret64(),
        c.mcycle64(),
        bytes(m.bus.ram),
        m.console_output(),
    )


def exec_words(words: Iterable[int], regs: Mapping[str | int, int] | None = None) -> Machine:
    """Run `words` followed by `wfi` in every mode (see MODES).

    Asserts the modes agree on the whole machine state; returns the translated one.
    """
    words = [*words, WFI]
    results = {}
    for mode in MODES:
        ran = run_asm(words, budget=len(words) + 1, mode=mode, regs=regs)
        assert ran.reason is StopReason.WFI_IDLE, (ran.result, hex(ran.cpu.pc), mode)
        results[mode] = ran.m
    for mode in MODES:
        assert state(results[mode]) == state(results["translated"]), mode
    return results["translated"]


def exec_insn(
    name: str,
    *,
    rd: int = 0,
    rs1: int = 0,
    rs2: int = 0,
    imm: int = 0,
    csr: int = 0,
    regs: Mapping[str | int, int] | None = None,
) -> Machine:
    """Execute one table instruction with preset registers (see `exec_words`)."""
    word = encode(name, rd=rd, rs1=rs1, rs2=rs2, imm=imm, csr=csr)
    return exec_words([word], regs)


class InsnRunner:
    """Runs one instruction word (then `wfi`) again and again with different registers.

    One machine per mode (see MODES) is kept and every call checks they agree; reusing
    them keeps Hypothesis properties fast.
    """

    def __init__(self, word: int) -> None:
        self.word = word
        self.machines = [(load_code([word, WFI]), mode) for mode in MODES]

    def __call__(self, regs: Mapping[str | int, int]) -> list[int]:
        out: list[int] | None = None
        for m, mode in self.machines:
            m.cpu.x[:] = [0] * 32  # in place: translated code holds this very list
            for name, value in regs.items():
                index = REG[name] if isinstance(name, str) else name
                m.cpu.x[index] = value & MASK32
            m.cpu.pc = RAM_BASE
            m.cpu.halted = False
            result = run_mode(m, 4, mode)
            assert result.reason is StopReason.WFI_IDLE, (result, hex(m.cpu.pc), mode)
            assert m.cpu.pc == RAM_BASE + 8
            if out is None:
                out = list(m.cpu.x)
            else:
                assert out == m.cpu.x, f"{mode} disagrees with {self.machines[0][1]}"
        assert out is not None
        return out
