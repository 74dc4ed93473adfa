"""The guest generator's plan: what a generated program is made of, as frozen records.

`fuzzer.strategies` draws a `GuestPlan` (the swarm features, the device `Setup` the
prologue programs, the body's chunks, see `fuzzer.guestchunks`); `fuzzer.guestgen`
writes it as assembly source. This module holds what both sides share: the features,
the program's memory layout and register roles, the rendering context, and the small
assembly helpers chunks are written with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from vm.config import DeviceSpec, MachineConfig
from vm.devices import block, clint, entropy, nic, plic, rtc, uart
from vm.devices.clint import Clint
from vm.devices.finisher import SifiveTest
from vm.devices.plic import Plic
from vm.devices.rtc import GoldfishRtc
from vm.devices.uart import Uart16550
from vm.slirp import HOST_MAC

# Kinds of the built-in devices the generator programs by their register maps.
KIND_FINISHER = SifiveTest.kind
KIND_CLINT = Clint.kind
KIND_PLIC = Plic.kind
KIND_UART = Uart16550.kind
KIND_RTC = GoldfishRtc.kind
KIND_BLOCK = block.KIND
KIND_NIC = nic.KIND
KIND_ENTROPY = entropy.KIND
BUILTIN_KINDS = frozenset(
    {KIND_FINISHER, KIND_CLINT, KIND_PLIC, KIND_UART, KIND_RTC, KIND_BLOCK, KIND_NIC, KIND_ENTROPY}
)

# Swarm features: each scenario enables a subset; chunks are drawn only for enabled ones.
# name -> the device kind it needs (None: the CPU alone).
FEATURES: Mapping[str, str | None] = {
    "loops": None,
    "repeat": None,  # the whole body runs several times (longer runs, more interleavings)
    "csr": None,
    "traps": None,
    "vectored": None,
    "timer": KIND_CLINT,  # CLINT timer interrupts and timer-armed WFI waits
    "tick": KIND_CLINT,  # the handler re-arms the timer: a periodic tick
    "msi": KIND_CLINT,  # software interrupts through msip
    "wfi": None,
    # Watching mip and status registers: busy loops (body chunks, the epilogue before it
    # sleeps) see a line rise at the icount it rose, which interrupts hide; the handler
    # reads some at every trap (a tick samples them at icounts of the guest's choosing).
    "watch": None,
    "plic": KIND_PLIC,  # sources enabled; the handler may hold a claim (ClaimHold too)
    "uart": KIND_UART,
    "uart.loopback": KIND_UART,
    "rtc": KIND_RTC,
    "block": KIND_BLOCK,
    "block.dma_code": KIND_BLOCK,  # block DMA into code the body then runs
    "nic": KIND_NIC,
    "entropy": KIND_ENTROPY,
    "entropy.handler": KIND_ENTROPY,  # the handler reads entropy at interrupt time
}
USER_FEATURE_PREFIX = "user:"  # + device name: a device exercised generically

MASK32 = 0xFFFF_FFFF
MSTATUS_MIE = 1 << 3
MIE_MSIE, MIE_MTIE, MIE_MEIE = 1 << 3, 1 << 7, 1 << 11
NS_PER_TICK = clint.NS_PER_TICK

# Pages the program uses, in bytes.
DATA_SIZE = 0x1000
DMA_SIZE = 0x2000
RING_SLOTS_MAX = 4
RING_SIZE = RING_SLOTS_MAX * nic.SLOT_SIZE
STACK_SIZE = 0x800
TRAP_STACK_SIZE = 0x400
VICTIM_WORDS = 7  # ALU instructions before the victim's `ret`
# Where a NIC ring may sit: area label -> the most slots that fit there.
RING_PLACES: Mapping[str, int] = {
    "ring_area": RING_SLOTS_MAX,
    "dma_area": DMA_SIZE // nic.SLOT_SIZE,
    "data_page": DATA_SIZE // nic.SLOT_SIZE,
}
# Where a block READ may land (DMA into RAM the body uses), label -> size.
DMA_TARGETS: Mapping[str, int] = {"data_page": DATA_SIZE, "dma_area": DMA_SIZE}
# Where a block WRITE may take its data from: any RAM the program has.
WRITE_SOURCES: Mapping[str, int] = {**DMA_TARGETS, "_start": 0x200, "records": 0x200}

# Registers ALU chunks may write (s0, s1, s10, s11, sp and ra have jobs; see guestgen).
ALU_REGS = (
    "t0", "t1", "t2", "t3", "t4", "t5", "t6",
    "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
    "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "gp", "tp",
)  # fmt: skip
READ_REGS = (*ALU_REGS, "zero", "s0", "s1", "s10", "s11", "sp", "ra")

GUEST_MAC = bytes.fromhex("525400123456")  # QEMU's default guest address
# A frame the guest sends (the host network echoes it with the addresses swapped).
TX_FRAME = (HOST_MAC + GUEST_MAC + b"\x88\xb5" + b"detfuzz guest frame").ljust(60, b"\0")


# -- the plan ----------------------------------------------------------------------------


class Ctx:
    """What rendering a chunk needs: the plan, the configuration's devices and time scale."""

    def __init__(self, plan: GuestPlan, config: MachineConfig) -> None:
        self.plan = plan
        self.config = config
        self.specs = builtin_specs(config)

    def ticks(self, insns: int) -> int:
        return ticks_for(self.config, insns)

    def spec(self, kind: str) -> DeviceSpec:
        return self.specs[kind]


class Chunk(Protocol):
    """A body chunk (fuzzer.guestchunks). One whose lines loop also has `extra_insns(ctx)`:
    what its loops run beyond one pass over its lines (for `estimated_length`)."""

    feature: ClassVar[str | None]

    def lines(self, ctx: Ctx, tag: str) -> list[str]: ...


@dataclass(frozen=True)
class UartSetup:
    ier: int
    fcr: int
    lcr: int  # without DLAB
    divisor: int | None  # None: keep the reset divisor
    mcr: int


@dataclass(frozen=True)
class PlicSetup:
    priorities: tuple[tuple[int, int], ...]  # (source, priority) for every source enabled
    threshold: int

    def enable_words(self) -> dict[int, int]:
        words: dict[int, int] = {}
        for source, _ in self.priorities:
            words[source // 32] = words.get(source // 32, 0) | 1 << (source % 32)
        return words

    def priority(self, source: int) -> int:
        return dict(self.priorities).get(source, 0)

    def delivers(self, source: int | None) -> bool:
        """Whether `source` interrupts the hart with this setup."""
        return source is not None and self.priority(source) > self.threshold


@dataclass(frozen=True)
class RtcSetup:
    irq: bool
    alarm_ns: int | None  # an alarm this far ahead on the HOST clock (0: in the past)
    rearm_ns: int  # the handler sets the next alarm this far ahead (0: not)


@dataclass(frozen=True)
class NicSetup:
    place: str  # a RING_PLACES label
    slots: int
    mask: int
    rx: bool


@dataclass(frozen=True)
class GenericService:
    """What the handler does for a user device's interrupt: read these addresses."""

    irq: int
    reads: tuple[tuple[int, int], ...]  # (address, width)


@dataclass(frozen=True)
class Setup:
    vectored: bool = False
    mie: int = 0
    tick_ticks: int = 0  # the handler's periodic re-arm (0: it disarms)
    first_timer: int | None = None  # ticks to the first timer interrupt
    uart: UartSetup | None = None
    plic: PlicSetup | None = None
    rtc: RtcSetup | None = None
    nic: NicSetup | None = None
    entropy_enable: bool = False
    handler_entropy: bool = False
    victim_sector: int | None = None  # block.dma_code: the sector holding the victim's twin
    final_waits: int = 0  # the epilogue waits (at most this often) for host work in flight
    repeat: int = 1  # times the body runs
    generic: tuple[GenericService, ...] = ()
    start: tuple[Chunk, ...] = ()  # run by the prologue before interrupts go on (first requests)
    final_watch: Chunk | None = None  # the epilogue watches (a Watch) before it waits
    hold_rounds: int = 0  # the handler holds each source it claims this long before servicing
    hold_points: tuple[WatchPoint, ...] = ()  # ... watching these meanwhile
    trap_points: tuple[WatchPoint, ...] = ()  # the handler reads these entering any trap


@dataclass(frozen=True)
class GuestPlan:
    features: frozenset[str]
    setup: Setup
    chunks: tuple[Chunk, ...] = ()


# -- helpers -------------------------------------------------------------------------------


def ticks_for(config: MachineConfig, insns: int) -> int:
    """CLINT ticks (10 MHz of virtual time) that pass while `insns` instructions run: delays
    are drawn in instructions, so a tick never outpaces the handler at any icount shift."""
    return max(1, (insns << config.icount_shift) // NS_PER_TICK)


def builtin_specs(config: MachineConfig) -> dict[str, DeviceSpec]:
    """The first device of each built-in kind the generator knows, by kind."""
    specs: dict[str, DeviceSpec] = {}
    for spec in config.devices:
        if spec.kind in BUILTIN_KINDS:
            specs.setdefault(spec.kind, spec)
    return specs


def generic_specs(config: MachineConfig) -> tuple[DeviceSpec, ...]:
    """Devices exercised generically: user devices and further built-in instances (but
    never a second finisher, which would end the run)."""
    primary = set(builtin_specs(config).values())
    return tuple(
        spec for spec in config.devices if spec not in primary and spec.kind != KIND_FINISHER
    )


def bump(label: str, index_reg: str | None = None) -> list[str]:
    """Add one to the word at `label` (clobbers t5, t6)."""
    lines = [f"la      t6, {label}"]
    if index_reg is not None:
        lines.append(f"add     t6, t6, {index_reg}")
    return [*lines, "lw      t5, 0(t6)", "addi    t5, t5, 1", "sw      t5, 0(t6)"]


def accumulate(label: str, reg: str) -> list[str]:
    """Fold `reg` into the word at `label` (rotate left 1, xor; clobbers t5, t6, t4)."""
    return [
        f"la      t6, {label}",
        "lw      t5, 0(t6)",
        "slli    t4, t5, 1",
        "srli    t5, t5, 31",
        "or      t5, t5, t4",
        f"xor     t5, t5, {reg}",
        "sw      t5, 0(t6)",
    ]


def observe(reg: str) -> str:
    """Body code: fold a value read from a device into s11."""
    return f"xor     s11, s11, {reg}"


def ints_off() -> str:
    return f"csrci   mstatus, {MSTATUS_MIE}"


def ints_on() -> str:
    return f"csrsi   mstatus, {MSTATUS_MIE}"


def load_insn(width: int, *, signed: bool = False) -> str:
    return {1: "lb" if signed else "lbu", 2: "lh" if signed else "lhu", 4: "lw"}[width]


def store_insn(width: int) -> str:
    return {1: "sb", 2: "sh", 4: "sw"}[width]


# -- watching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchPoint:
    """One observation of a watch round: a CSR (`csr`) or a device register (`base`, an
    equate or an address, plus `offset`, read `width` bytes wide)."""

    base: str
    offset: int = 0
    width: int = 4
    csr: str | None = None

    def read(self, dest: str) -> list[str]:
        if self.csr is not None:
            return [f"csrr    {dest}, {self.csr}"]
        load = load_insn(self.width)
        return [f"li      t0, {self.base}", f"{load}     {dest}, {self.offset}(t0)"]


# Registers worth watching, by device kind (None: the hart's own), read as a driver reads
# status: no lasting effect beyond a status read's (UART IIR drops THR-empty, LSR clears
# overrun). Never the PLIC's claim: a claim must be completed (ClaimHold does both).
WATCHABLE: Mapping[str | None, tuple[WatchPoint, ...]] = {
    None: (WatchPoint("", csr="mip"),),
    KIND_PLIC: tuple(WatchPoint("PLIC_PENDING", 4 * word) for word in range(plic.WORDS)),
    KIND_CLINT: (WatchPoint("CLINT_MTIME"),),
    KIND_UART: (WatchPoint("UART", uart.LSR, 1), WatchPoint("UART", uart.IIR_FCR, 1)),
    KIND_BLOCK: (WatchPoint("BLK", block.STATUS), WatchPoint("BLK", block.DONE_COUNT)),
    KIND_NIC: (WatchPoint("NIC", nic.INT_STATUS), WatchPoint("NIC", nic.RX_HEAD)),
    KIND_RTC: (WatchPoint("RTC", rtc.ALARM_STATUS),),
    KIND_ENTROPY: (WatchPoint("ENTROPY", entropy.STATUS),),
}
HASH_MULTIPLIER = 33  # acc = acc * 33 + value: unlike an xor, a value seen twice counts


def hash_into(acc: str, reg: str) -> list[str]:
    """Fold `reg` into `acc` (t3 holds HASH_MULTIPLIER)."""
    return [f"mul     {acc}, {acc}, t3", f"add     {acc}, {acc}, {reg}"]


def watch_round(points: tuple[WatchPoint, ...], acc: str) -> list[str]:
    """Read every point and hash it into `acc` (clobbers t0, t1; t3 holds HASH_MULTIPLIER)."""
    out: list[str] = []
    for point in points:
        out += [*point.read("t1"), *hash_into(acc, "t1")]
    return out


def watch_loop(
    points: tuple[WatchPoint, ...], rounds: int, counter: str, acc: str, label: str
) -> list[str]:
    """`rounds` watch rounds (at least one), counted in `counter`."""
    return [
        f"li      {counter}, {max(1, rounds)}",
        f"{label}:",
        *watch_round(points, acc),
        f"addi    {counter}, {counter}, -1",
        f"bnez    {counter}, {label}",
    ]


def watch_extra(points: tuple[WatchPoint, ...], rounds: int) -> int:
    """Instructions `watch_loop` runs beyond one pass over its lines."""
    return (max(1, rounds) - 1) * (instructions(watch_round(points, "s11")) + 2)


def instructions(lines: Sequence[str]) -> int:
    """Instructions in assembly lines (labels and directives are none; a `li` counts one)."""
    return sum(1 for line in lines if not line.endswith(":") and not line.lstrip().startswith("."))
