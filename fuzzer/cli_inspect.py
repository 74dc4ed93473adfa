"""What `detfuzz replay --dump` and `--trace` print: a replaying machine's state, and an
instruction-by-instruction trace with its MMIO accesses and log events.

Imported only by those options (it pulls in the digest and the disassembler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from vm.csr import CSR_NAMES, Csr
from vm.digest import component_digests, digest
from vm.disasm import disassemble
from vm.isa import ABI_NAMES
from vm.machine import Machine
from vm.replay import Replayer
from vm.replaylog import EventKind, Log
from vm.stop import RunResult, StopReason
from vm.vmstate import SectionData, VMStateError, save

# Lists longer than this show only their non-zero entries (the PLIC's 97 priorities).
_LIST_SHOWN: Final = 8
# Stops after which the trace steps on: one instruction done (BUDGET), a trap entry the
# trace broke at (BREAKPOINT), and a guest reset (the machine has reset itself).
_STEP_ON: Final = frozenset({StopReason.BUDGET, StopReason.BREAKPOINT, StopReason.FINISHER_RESET})

Write = Callable[[str], None]


# -- the state dump --------------------------------------------------------------------------


def state_lines(machine: Machine, log: Log) -> Iterator[str]:
    """The machine's state at its current instruction boundary, for `--dump`."""
    cpu = machine.cpu
    yield f"pc            {cpu.pc:#010x}"
    yield f"icount        {cpu.icount}"
    yield f"halted (WFI)  {'yes' if cpu.halted else 'no'}"
    yield (
        f"virtual time  {machine.vclock.now_ns(cpu.icount)} ns "
        f"(icount shift {machine.config.icount_shift})"
    )
    replayer = machine.replayer
    if replayer is not None:
        index, _ = replayer.position()
        yield f"log position  event #{index} of {len(log.events)}, next {replayer.waiting_for()}"
    yield "registers:"
    for number, value in enumerate(cpu.x):
        yield f"  x{number:<2} {ABI_NAMES[number]:<4}  {value:#010x}"
    yield "csrs:"
    for csr in Csr:
        yield f"  {CSR_NAMES[csr]:<9}  {cpu.csr_read(csr):#010x}"
    yield "devices:"
    for name, device in machine.devices.items():
        yield f"  {name} ({type(device).kind}):"
        yield from _device_lines(device)
    yield f"digest        {digest(machine).hex()}"
    yield "component digests:"
    components = component_digests(machine)
    width = max(map(len, components))
    for name in sorted(components):
        yield f"  {name:<{width}}  {components[name].hex()}"


def _device_lines(device: object) -> Iterator[str]:
    """The device's saved fields (its vmstate), one per line, subsections and structs as
    dotted paths. savevm reads exactly these, so they are what a snapshot carries."""
    description = getattr(type(device), "VMSTATE", None)
    if description is None:
        yield "    (no saved state declared)"
        return
    try:
        section = save(description, device)
    except VMStateError as exc:
        yield f"    (cannot save: {exc})"
        return
    lines = list(_section_lines(section, ""))
    yield from lines or ["    (no fields)"]


def _section_lines(section: SectionData, prefix: str) -> Iterator[str]:
    for name, value in section["fields"].items():
        yield from _value_lines(f"{prefix}{name}", value)
    for sub in section["subsections"]:
        yield from _section_lines(sub, f"{prefix}{sub['name']}/")


def _value_lines(path: str, value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _value_lines(f"{path}.{key}", item)
    else:
        yield f"    {path} = {_show(value)}"


def _show(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:#x}" if value < 10 else f"{value:#x} ({value})"
    if isinstance(value, bytes | bytearray):
        return f"{bytes(value).hex()} ({len(value)} bytes)" if value else "(empty)"
    if isinstance(value, list):
        return _show_list(value)
    return repr(value)


def _show_list(items: list[object]) -> str:
    if len(items) <= _LIST_SHOWN:
        return "[" + ", ".join(_show(item) for item in items) + "]"
    nonzero = [f"{i}: {_show(item)}" for i, item in enumerate(items) if item]
    return f"{len(items)} entries, non-zero: {{{', '.join(nonzero)}}}"


# -- the trace -------------------------------------------------------------------------------


class Tracer:
    """Single-steps a replaying machine through an icount window, writing one line per
    instruction (the icount before it, its pc, word and disassembly), then a line per MMIO
    access it made and per log event it consumed.

    Each instruction boundary is first settled with `run(0)` (timers, async events and an
    interrupt the log says is taken here), so the pc printed is the instruction that really
    runs next. A breakpoint at the trap vector ends a step at a trap entry: an instruction
    that faults is not counted, so `step()` would otherwise run the handler's first
    instruction too, unseen. Stepping changes nothing a replay does: every stop lands on an
    instruction boundary and the log decides every event.
    """

    def __init__(self, machine: Machine, log: Log, write: Write) -> None:
        if machine.replayer is None:
            raise ValueError("the trace follows a replaying machine")
        self.machine = machine
        self.replayer: Replayer = machine.replayer
        self.events = log.events
        self.write = write
        self.pending: list[str] = []  # MMIO lines of the current step

    def run(self, end: int) -> RunResult:
        """Step until icount `end` or an earlier stop (returned; BUDGET when `end` is met)."""
        machine = self.machine
        start = machine.cpu.icount
        machine.bus.mmio_observer = self._mmio
        try:
            while machine.cpu.icount < end:
                result = self._settle()
                if result.reason is StopReason.BUDGET:
                    result = self._step()
                if result.reason not in _STEP_ON:
                    executed = machine.cpu.icount - start
                    return RunResult(result.reason, executed, result.finisher_code)
        finally:
            machine.bus.mmio_observer = None
            machine.set_breakpoints(frozenset())
        return RunResult(StopReason.BUDGET, machine.cpu.icount - start)

    def _settle(self) -> RunResult:
        before = self.replayer.position()
        result = self.machine.run(0)
        self._write_events(before)
        return result

    def _step(self) -> RunResult:
        machine = self.machine
        cpu = machine.cpu
        # An exception always enters at the vector base (only interrupts are vectored).
        trap_entry = frozenset({cpu.mtvec & ~3})
        if machine.breakpoints != trap_entry:
            machine.set_breakpoints(trap_entry)
        self.write(instruction_line(machine, cpu.pc))
        before = self.replayer.position()
        result = machine.step()
        for line in self.pending:
            self.write(line)
        self.pending.clear()
        self._write_events(before)
        return result

    def _mmio(self, access: str, region: str, offset: int, size: int, value: int) -> None:
        shown = f"{value:#0{2 + 2 * size}x}"  # as wide as the access
        where = f"{region}+{offset:#05x}"
        self.pending.append(f"    mmio {access:<5} {where} size {size} value {shown}")

    def _write_events(self, before: tuple[int, int]) -> None:
        """One line per event the replay consumed since position `before`."""
        index, icount = before
        end, _ = self.replayer.position()
        for i in range(index, end):
            event = self.events[i]
            if event.kind is EventKind.INSTRUCTION:
                icount += event.args[0]  # type: ignore[operator]
            else:
                self.write(f"    event #{i} @icount {icount}: {event}")


def instruction_line(machine: Machine, pc: int) -> str:
    word = machine.bus.fetch(pc)
    text = "(nothing to fetch here)" if word is None else f"{word:08x}  {disassemble(word, pc=pc)}"
    return f"icount {machine.cpu.icount:>10}  pc {pc:#010x}  {text}"
