"""The body's chunks: one frozen record per kind of work, each writing its own assembly.

A chunk's `lines(ctx, tag)` is a pure function of the chunk, the plan's setup and the
configuration (`tag` makes its labels unique). `feature` names the swarm feature it
belongs to (None: always available). The rules every chunk keeps so that a program
terminates are in `fuzzer.guestgen`'s docstring: bounded loops, WFI only behind a source
that fires, masks put back, DMA only into the data page, the DMA area or the victim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from fuzzer.guestplan import (
    DMA_TARGETS,
    HASH_MULTIPLIER,
    KIND_BLOCK,
    KIND_CLINT,
    KIND_PLIC,
    KIND_RTC,
    MASK32,
    MIE_MEIE,
    MIE_MTIE,
    RING_PLACES,
    TX_FRAME,
    USER_FEATURE_PREFIX,
    VICTIM_WORDS,
    Chunk,
    Ctx,
    WatchPoint,
    bump,
    hash_into,
    ints_off,
    ints_on,
    load_insn,
    observe,
    store_insn,
    watch_extra,
    watch_loop,
    watch_round,
)
from vm.devices import block, entropy, nic, rtc, uart

# -- CPU chunks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Alu:
    """Straight-line ALU and M-extension instructions on ALU_REGS."""

    ops: tuple[str, ...]
    feature: ClassVar[str | None] = None

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return list(self.ops)


@dataclass(frozen=True)
class Memory:
    """Loads and stores relative to s0 (the data page), any width and alignment."""

    ops: tuple[str, ...]
    feature: ClassVar[str | None] = None

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return list(self.ops)


@dataclass(frozen=True)
class Loop:
    """A counted loop of ALU and memory instructions."""

    count: int
    ops: tuple[str, ...]
    feature: ClassVar[str | None] = "loops"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return [
            f"li      s1, {max(1, self.count)}",
            f"{tag}_loop:",
            *self.ops,
            "addi    s1, s1, -1",
            f"bnez    s1, {tag}_loop",
        ]

    def extra_insns(self, ctx: Ctx) -> int:
        return (max(1, self.count) - 1) * (len(self.ops) + 2)


@dataclass(frozen=True)
class CsrOps:
    ops: tuple[str, ...]
    feature: ClassVar[str | None] = "csr"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return list(self.ops)


# Trap-raising sequences; the handler skips the instruction (or returns to ra).
TRAPS: Mapping[str, tuple[str, ...]] = {
    "ecall": ("ecall",),
    "ebreak": ("ebreak",),
    "illegal_zero": (".word   0",),
    "illegal_ones": (".word   0xffffffff",),
    "csr_readonly": ("csrw    mvendorid, zero",),
    "csr_missing": ("csrr    t0, 0x310",),  # mstatush: this hart has none
    "load_fault": ("li      t0, 0x30000000", "lw      t1, 0(t0)"),
    "store_fault": ("li      t0, 0x30000000", "sw      t1, 4(t0)"),
    # jalr to label + 2: the jump itself traps (cause 0), mepc is the jalr.
    "misaligned_jump": ("la      t0, {tag}_after + 2", "jalr    zero, 0(t0)", "{tag}_after:"),
    # a call into unmapped space: the fetch faults (cause 1), the handler returns to ra.
    "fetch_fault": ("li      t0, 0x30000000", "jalr    ra, 0(t0)"),
    "misaligned_mmio": ("li      t0, 0x0200bff9", "lw      t1, 0(t0)", observe("t1")),
}
TRAPS_NEEDING: Mapping[str, str] = {"misaligned_mmio": KIND_CLINT}


@dataclass(frozen=True)
class Trap:
    kind: str
    feature: ClassVar[str | None] = "traps"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return [line.replace("{tag}", tag) for line in TRAPS[self.kind]]


# -- CLINT ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimerArm:
    """Arm the CLINT timer `insns` instructions' worth of virtual time ahead and go on."""

    insns: int
    feature: ClassVar[str | None] = "timer"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return [f"li      a0, {ctx.ticks(self.insns)}", "call    set_timer"]


@dataclass(frozen=True)
class SoftIrq:
    feature: ClassVar[str | None] = "msi"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return ["li      t0, CLINT_MSIP", "li      t1, 1", "sw      t1, 0(t0)"]


@dataclass(frozen=True)
class MtimeOps:
    """Read mtime (high, low, high), or move it by writing its low word."""

    nudge: int | None  # None: read only; else add this to mtime's low word
    feature: ClassVar[str | None] = "timer"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = [
            "li      t0, CLINT_MTIME",
            "lw      t1, 4(t0)",
            "lw      t2, 0(t0)",
            "lw      t3, 4(t0)",
            observe("t1"),
            observe("t2"),
            observe("t3"),
        ]
        if self.nudge is not None:
            out += [f"li      t4, {self.nudge}", "add     t2, t2, t4", "sw      t2, 0(t0)"]
        return out


# -- waiting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """WFI with interrupts masked in mstatus (a wake-up is never lost), behind a source
    that will fire. `timer` arms the CLINT `insns` instructions' worth ahead. `host` waits
    for host time to pass: for a block request in flight or an RTC alarm running when
    their interrupts reach the hart, else behind an RTC alarm `insns` ns ahead (host
    stimulus may come first), else as `timer`; with no source at all it does not wait."""

    kind: str  # "timer" | "host"
    insns: int
    feature: ClassVar[str | None] = "wfi"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        setup = ctx.plan.setup
        has_timer = KIND_CLINT in ctx.specs and bool(setup.mie & MIE_MTIE)
        out = [ints_off()]
        if self.kind == "host":
            out += host_wake_checks(ctx, f"{tag}_wfi")
            if rtc_wakes(ctx):
                out += [
                    "li      t0, RTC",
                    f"lw      t1, {rtc.IRQ_ENABLED}(t0)",
                    f"beqz    t1, {tag}_clint",
                    f"li      a0, {max(1, self.insns)}",
                    "call    rtc_alarm_in",
                    f"j       {tag}_wfi",
                    f"{tag}_clint:",
                ]
        if has_timer:
            out += [f"li      a0, {ctx.ticks(self.insns)}", "call    set_timer"]
        else:
            out.append(f"j       {tag}_done")
        return [*out, f"{tag}_wfi:", "wfi", f"{tag}_done:", ints_on()]


def rtc_wakes(ctx: Ctx) -> bool:
    """Whether an RTC alarm reaches the hart (the plan enables its interrupt path)."""
    setup = ctx.plan.setup
    spec = ctx.specs.get(KIND_RTC)
    return (
        spec is not None
        and setup.rtc is not None
        and setup.plic is not None
        and bool(setup.mie & MIE_MEIE)
        and setup.plic.delivers(spec.irq)
    )


def host_wake_checks(ctx: Ctx, target: str) -> list[str]:
    """Branches to `target` when host work is due whose interrupt will wake the hart."""
    setup = ctx.plan.setup
    out: list[str] = []
    if setup.plic is None or not setup.mie & MIE_MEIE:
        return out
    blk = ctx.specs.get(KIND_BLOCK)
    if blk is not None and "block" in ctx.plan.features and setup.plic.delivers(blk.irq):
        out += [
            "li      t0, BLK",
            f"lw      t1, {block.STATUS}(t0)",
            f"srli    t1, t1, {block.STATUS_IN_FLIGHT_SHIFT}",
            "andi    t1, t1, 0xff",
            f"bnez    t1, {target}",
        ]
    if rtc_wakes(ctx):
        out += [
            "li      t0, RTC",
            f"lw      t1, {rtc.IRQ_ENABLED}(t0)",
            f"lw      t2, {rtc.ALARM_STATUS}(t0)",
            "and     t1, t1, t2",
            f"bnez    t1, {target}",
        ]
    return out


# -- UART ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UartTx:
    """Bytes to THR, polling LSR.THRE first (bounded) when `poll`."""

    data: bytes
    poll: bool
    feature: ClassVar[str | None] = "uart"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = ["li      t0, UART"]
        for index, byte in enumerate(self.data):
            if self.poll:
                out += [
                    "li      t3, 16",
                    f"{tag}_p{index}:",
                    f"lbu     t1, {uart.LSR}(t0)",
                    f"andi    t1, t1, {uart.LSR_THRE}",
                    f"bnez    t1, {tag}_s{index}",
                    "addi    t3, t3, -1",
                    f"bnez    t3, {tag}_p{index}",
                    f"{tag}_s{index}:",
                ]
            out += [f"li      t1, {byte}", f"sb      t1, {uart.RBR_THR_DLL}(t0)"]
        return out


@dataclass(frozen=True)
class UartRead:
    """Reads of UART registers (RBR pops the FIFO, IIR clears THR-empty, LSR clears OE)."""

    regs: tuple[int, ...]
    feature: ClassVar[str | None] = "uart"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = ["li      t0, UART"]
        for reg in self.regs:
            out += [f"lbu     t1, {reg}(t0)", observe("t1")]
        return out


# Registers UartWrite may write, and the bits it keeps (LCR never gets DLAB: see UartDivisor).
UART_WRITABLE: Mapping[int, int] = {
    uart.IER_DLM: 0x0F,
    uart.IIR_FCR: 0xFF,
    uart.LCR: 0x7F,
    uart.MCR: 0x1F,
    uart.SCR: 0xFF,
}


@dataclass(frozen=True)
class UartWrite:
    reg: int
    value: int
    feature: ClassVar[str | None] = "uart"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        value = self.value & UART_WRITABLE[self.reg]
        return ["li      t0, UART", f"li      t1, {value}", f"sb      t1, {self.reg}(t0)"]


@dataclass(frozen=True)
class UartDivisor:
    """Set the divisor through DLAB with interrupts masked (the handler reads RBR at
    offset 0, which is DLL while DLAB is set), read it back, then clear DLAB."""

    divisor: int
    lcr: int
    feature: ClassVar[str | None] = "uart"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        lcr = self.lcr & 0x7F
        return [
            ints_off(),
            "li      t0, UART",
            f"li      t1, {lcr | uart.LCR_DLAB}",
            f"sb      t1, {uart.LCR}(t0)",
            f"li      t1, {self.divisor & 0xFF}",
            f"sb      t1, {uart.RBR_THR_DLL}(t0)",
            f"li      t1, {self.divisor >> 8 & 0xFF}",
            f"sb      t1, {uart.IER_DLM}(t0)",
            f"lbu     t2, {uart.RBR_THR_DLL}(t0)",
            observe("t2"),
            f"li      t1, {lcr}",
            f"sb      t1, {uart.LCR}(t0)",
            ints_on(),
        ]


@dataclass(frozen=True)
class UartLoopback:
    """Bytes through loopback (more than the FIFO holds overruns it); `keep` leaves
    loopback on, else MCR goes back to the prologue's value."""

    data: bytes
    keep: bool
    feature: ClassVar[str | None] = "uart.loopback"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        setup = ctx.plan.setup.uart
        mcr = setup.mcr if setup is not None else uart.MCR_OUT2
        out = [
            "li      t0, UART",
            f"li      t1, {mcr | uart.MCR_LOOP}",
            f"sb      t1, {uart.MCR}(t0)",
        ]
        for byte in self.data:
            out += [f"li      t1, {byte}", f"sb      t1, {uart.RBR_THR_DLL}(t0)"]
        if not self.keep:
            out += [f"li      t1, {mcr}", f"sb      t1, {uart.MCR}(t0)"]
        return out


@dataclass(frozen=True)
class UartDrain:
    """Poll the receiver: up to `limit` bytes while LSR.DR is set."""

    limit: int
    feature: ClassVar[str | None] = "uart"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return [
            "li      t0, UART",
            f"li      t3, {max(1, self.limit)}",
            f"{tag}_next:",
            f"lbu     t1, {uart.LSR}(t0)",
            observe("t1"),
            "andi    t1, t1, 1",
            f"beqz    t1, {tag}_done",
            f"lbu     t2, {uart.RBR_THR_DLL}(t0)",
            observe("t2"),
            "addi    t3, t3, -1",
            f"bnez    t3, {tag}_next",
            f"{tag}_done:",
        ]


# -- PLIC ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlicMask:
    """Change the threshold, one source's priority or its enable bit, run `ops`, put the
    prologue's value back (enable writes do not re-evaluate MEIP: QEMU's quirk)."""

    kind: str  # "threshold" | "priority" | "enable"
    source: int
    value: int
    ops: tuple[str, ...]
    feature: ClassVar[str | None] = "plic"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        setup = ctx.plan.setup.plic
        assert setup is not None
        if self.kind == "threshold":
            address, old = "PLIC_THRESHOLD", setup.threshold
        elif self.kind == "priority":
            address, old = f"PLIC + {4 * self.source}", setup.priority(self.source)
        else:
            word = self.source // 32
            address, old = f"PLIC_ENABLE + {4 * word}", setup.enable_words().get(word, 0)
        new = self.value if self.kind != "enable" else old & ~(1 << self.source % 32)
        return [
            f"li      t0, {address}",
            f"li      t1, {new & MASK32}",
            "sw      t1, 0(t0)",
            *self.ops,
            f"li      t0, {address}",
            f"li      t1, {old}",
            "sw      t1, 0(t0)",
        ]


@dataclass(frozen=True)
class PlicPoll:
    """Claim and service sources from the body, interrupts masked (polling mode)."""

    feature: ClassVar[str | None] = "plic"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return [ints_off(), "call    claim_loop", *bump("cnt_poll"), ints_on()]


PLIC_READABLE = (
    ("PLIC_PENDING", 0),
    ("PLIC_PENDING", 4),
    ("PLIC_PENDING", 8),
    ("PLIC_ENABLE", 0),
    ("PLIC_THRESHOLD", 0),
    ("PLIC", 4 * 10),
    ("PLIC", 4 * 96),
)


@dataclass(frozen=True)
class PlicRead:
    regs: tuple[int, ...]  # indices into PLIC_READABLE
    feature: ClassVar[str | None] = "plic"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out: list[str] = []
        for index in self.regs:
            base, offset = PLIC_READABLE[index % len(PLIC_READABLE)]
            out += [f"li      t0, {base}", f"lw      t1, {offset}(t0)", observe("t1")]
        return out


# -- block ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockRequest:
    command: int  # block.CMD_READ / CMD_WRITE, or a bad one
    sector: int
    count: int
    where: str  # a DMA_TARGETS / WRITE_SOURCES label, or "bad"
    offset: int


@dataclass(frozen=True)
class BlockSubmit:
    """Requests submitted back to back (several in flight; BUSY past the queue depth);
    `scribble` then overwrites the first one's buffer while it is in flight."""

    requests: tuple[BlockRequest, ...]
    scribble: bool
    feature: ClassVar[str | None] = "block"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = ["li      t0, BLK"]
        for request in self.requests:
            address = (
                "li      t1, 0x30000000"
                if request.where == "bad"
                else f"la      t1, {request.where} + {request.offset}"
            )
            out += [
                f"li      t1, {request.sector}",
                f"sw      t1, {block.SECTOR}(t0)",
                address,
                f"sw      t1, {block.ADDRESS}(t0)",
                f"li      t1, {request.count}",
                f"sw      t1, {block.COUNT}(t0)",
                f"li      t1, {request.command}",
                f"sw      t1, {block.COMMAND}(t0)",
                f"lw      t2, {block.SUBMIT_RESULT}(t0)",
                f"lw      t3, {block.LAST_ID}(t0)",
                observe("t2"),
                observe("t3"),
            ]
        first = self.requests[0] if self.requests else None
        if self.scribble and first is not None and first.where in DMA_TARGETS:
            out += [
                f"la      t1, {first.where} + {first.offset}",
                "sw      s11, 0(t1)",
                "sw      sp, 8(t1)",
            ]
        return out


BLOCK_READABLE = (
    block.MAGIC,
    block.CAPACITY,
    block.STATUS,
    block.DONE_COUNT,
    block.DONE_ID,
    block.DONE_RESULT,
    block.LAST_ID,
    block.SUBMIT_RESULT,
    block.SECTOR,
    block.COMMAND,
)


@dataclass(frozen=True)
class BlockRead:
    regs: tuple[int, ...]
    feature: ClassVar[str | None] = "block"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = ["li      t0, BLK"]
        for reg in self.regs:
            out += [f"lw      t1, {reg}(t0)", observe("t1")]
        return out


@dataclass(frozen=True)
class BlockAck:
    """Retire the oldest completion from the body (the handler may never see it)."""

    feature: ClassVar[str | None] = "block"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return ["li      t0, BLK", f"sw      zero, {block.DONE_ACK}(t0)"]


@dataclass(frozen=True)
class VictimCall:
    feature: ClassVar[str | None] = "block.dma_code"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return ["call    victim", observe("a0")]


@dataclass(frozen=True)
class VictimDma:
    """Once the twin is on disk: READ it over the victim (code the body calls)."""

    feature: ClassVar[str | None] = "block.dma_code"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return [
            "la      t0, victim_ready",
            "lw      t0, 0(t0)",
            f"beqz    t0, {tag}_skip",
            "li      t0, BLK",
            "li      t1, VICTIM_SECTOR",
            f"sw      t1, {block.SECTOR}(t0)",
            "la      t1, victim",
            f"sw      t1, {block.ADDRESS}(t0)",
            "li      t1, 1",
            f"sw      t1, {block.COUNT}(t0)",
            f"li      t1, {block.CMD_READ}",
            f"sw      t1, {block.COMMAND}(t0)",
            f"lw      t2, {block.SUBMIT_RESULT}(t0)",
            observe("t2"),
            f"{tag}_skip:",
        ]


# The victim's two versions, word for word: both are ALU code of the same shape.
VICTIM_CODE = ("addi    a0, a0, 1",) * VICTIM_WORDS
VICTIM_TWIN = ("xori    a0, a0, 0x35",) * VICTIM_WORDS


@dataclass(frozen=True)
class VictimPatch:
    """A CPU store of one instruction word into the victim (either version's)."""

    index: int
    twin: bool
    feature: ClassVar[str | None] = "block.dma_code"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        source = "victim_twin" if self.twin else "victim_orig"
        offset = 4 * (self.index % VICTIM_WORDS)
        return [
            f"la      t0, {source}",
            f"lw      t1, {offset}(t0)",
            "la      t0, victim",
            f"sw      t1, {offset}(t0)",
        ]


# -- NIC --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NicTx:
    """Send `length` bytes from the guest's frame, the data page or a bad buffer."""

    source: str  # "frame" | "data" | "bad_length" | "bad_address"
    length: int
    feature: ClassVar[str | None] = "nic"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        address = {
            "frame": "la      t1, tx_frame",
            "data": "la      t1, data_page",
            "bad_length": "la      t1, tx_frame",
            "bad_address": "li      t1, 0x30000000",
        }[self.source]
        length = {"frame": min(self.length, len(TX_FRAME)), "bad_length": 0}.get(
            self.source, self.length
        )
        return [
            "li      t0, NIC",
            address,
            f"sw      t1, {nic.TX_ADDR}(t0)",
            f"li      t1, {length}",
            f"sw      t1, {nic.TX_LEN}(t0)",
            f"sw      zero, {nic.TX_DOORBELL}(t0)",
        ]


@dataclass(frozen=True)
class NicRing:
    """Move the RX ring (interrupts masked; its slots cleared first)."""

    place: str
    slots: int
    feature: ClassVar[str | None] = "nic"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return [ints_off(), *ring_lines(self.place, self.slots), ints_on()]


def ring_lines(place: str, slots: int) -> list[str]:
    slots = min(slots, RING_PLACES[place])
    out = [f"la      t1, {place}", f"li      t2, {nic.SLOT_SIZE}", "mv      t3, t1"]
    for _ in range(slots):
        out += ["sw      zero, 0(t3)", "add     t3, t3, t2"]
    return [
        *out,
        "li      t0, NIC",
        f"sw      t1, {nic.RX_RING_BASE}(t0)",
        f"li      t1, {slots}",
        f"sw      t1, {nic.RX_RING_SIZE}(t0)",
    ]


NIC_WRITABLE: Mapping[int, int] = {nic.CTRL: nic.CTRL_RX_ENABLE, nic.INT_MASK: nic.INT_ALL}
NIC_READABLE = (
    nic.MAGIC,
    nic.CTRL,
    nic.INT_STATUS,
    nic.INT_MASK,
    nic.RX_HEAD,
    nic.RX_PACKETS,
    nic.TX_PACKETS,
    nic.RX_RING_SIZE,
)


@dataclass(frozen=True)
class NicWrite:
    reg: int
    value: int
    feature: ClassVar[str | None] = "nic"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        value = self.value & NIC_WRITABLE[self.reg]
        return ["li      t0, NIC", f"li      t1, {value}", f"sw      t1, {self.reg}(t0)"]


@dataclass(frozen=True)
class NicRead:
    regs: tuple[int, ...]
    feature: ClassVar[str | None] = "nic"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = ["li      t0, NIC"]
        for reg in self.regs:
            out += [f"lw      t1, {reg}(t0)", observe("t1")]
        return out


# -- RTC --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtcRead:
    """TIME_LOW (latches TIME_HIGH), TIME_HIGH and the alarm registers."""

    feature: ClassVar[str | None] = "rtc"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = ["li      t0, RTC"]
        for reg in (rtc.TIME_LOW, rtc.TIME_HIGH, rtc.ALARM_STATUS, rtc.ALARM_LOW):
            out += [f"lw      t1, {reg}(t0)", observe("t1")]
        return out


@dataclass(frozen=True)
class RtcAlarm:
    """An alarm `delta_ns` ahead on the HOST clock (0: in the past, so at once)."""

    delta_ns: int
    feature: ClassVar[str | None] = "rtc"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        return alarm_lines(self.delta_ns)


def alarm_lines(delta_ns: int) -> list[str]:
    if delta_ns == 0:
        return [
            "li      t0, RTC",
            f"sw      zero, {rtc.ALARM_HIGH}(t0)",
            f"sw      zero, {rtc.ALARM_LOW}(t0)",
        ]
    return [f"li      a0, {delta_ns}", "call    rtc_alarm_in"]


RTC_WRITABLE: Mapping[int, int] = {
    rtc.IRQ_ENABLED: 1,
    rtc.CLEAR_ALARM: 1,
    rtc.CLEAR_INTERRUPT: 1,
    rtc.TIME_HIGH: MASK32,  # sets the count's high word (moves the offset)
}


@dataclass(frozen=True)
class RtcWrite:
    reg: int
    value: int
    feature: ClassVar[str | None] = "rtc"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        value = self.value & RTC_WRITABLE[self.reg]
        return ["li      t0, RTC", f"li      t1, {value}", f"sw      t1, {self.reg}(t0)"]


# -- entropy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntropyRead:
    count: int
    feature: ClassVar[str | None] = "entropy"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = ["li      t0, ENTROPY", f"lw      t1, {entropy.STATUS}(t0)", observe("t1")]
        for _ in range(max(1, self.count)):
            out += [f"lw      t1, {entropy.DATA}(t0)", observe("t1")]
        return [*out, f"lw      t1, {entropy.COUNT}(t0)", observe("t1")]


ENTROPY_WRITABLE: Mapping[int, int] = {entropy.CTRL: entropy.CTRL_ENABLE, entropy.COUNT: MASK32}


@dataclass(frozen=True)
class EntropyWrite:
    reg: int
    value: int
    feature: ClassVar[str | None] = "entropy"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        value = self.value & ENTROPY_WRITABLE[self.reg]
        return ["li      t0, ENTROPY", f"li      t1, {value}", f"sw      t1, {self.reg}(t0)"]


# -- user devices -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GenericOp:
    address: int
    width: int
    store: bool
    value: int = 0


@dataclass(frozen=True)
class GenericAccess:
    """Loads and stores of the device's widths in its window (a user device)."""

    device: str
    ops: tuple[GenericOp, ...]
    feature: ClassVar[str | None] = None  # USER_FEATURE_PREFIX + device

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out: list[str] = []
        for op in self.ops:
            out.append(f"li      t0, {op.address:#x}")
            if op.store:
                mask = (1 << 8 * op.width) - 1
                out += [f"li      t1, {op.value & mask}", f"{store_insn(op.width)}      t1, 0(t0)"]
            else:
                out += [f"{load_insn(op.width)}     t1, 0(t0)", observe("t1")]
        return out


# -- watching ---------------------------------------------------------------------------------
#
# A guest that only takes interrupts cannot tell when a line rose: a replay enters the
# handler where the log says. A busy guest that reads status words over and over sees
# each change at the icount it happened, which is what the replay rules pin (a line that a
# host-side timer or bottom half raises shows at another icount in a replay).


@dataclass(frozen=True)
class Watch:
    """Busy-watch (interrupts masked in mstatus when `masked`, so nothing is taken and the
    lines' own timing shows): wait up to `patience` rounds for the interrupt state to
    change (mip, and the PLIC's first pending word, where the lines it does not deliver
    show: a driver polling for a completion), noting how long it took and what changed,
    then hash `points` into s11 for `rounds` rounds."""

    points: tuple[WatchPoint, ...]
    patience: int
    rounds: int
    masked: bool
    feature: ClassVar[str | None] = "watch"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = [f"li      t3, {HASH_MULTIPLIER}"]
        if self.patience > 0:
            pending = KIND_PLIC in ctx.specs
            out += [
                "csrr    t4, mip",
                *(["li      t0, PLIC_PENDING", "lw      t5, 0(t0)"] if pending else []),
                "li      t2, 0",
                f"li      s1, {self.patience}",
                f"{tag}_wait:",
                "csrr    t1, mip",
                f"bne     t1, t4, {tag}_seen",
                *(["lw      t2, 0(t0)", f"bne     t2, t5, {tag}_seen"] if pending else []),
                "addi    s1, s1, -1",
                f"bnez    s1, {tag}_wait",
                f"{tag}_seen:",
                *hash_into("s11", "s1"),
                *hash_into("s11", "t1"),
                *hash_into("s11", "t2"),
            ]
        out += watch_loop(self.points, self.rounds, "s1", "s11", f"{tag}_round")
        return [ints_off(), *out, ints_on()] if self.masked else out

    def extra_insns(self, ctx: Ctx) -> int:
        # Half the patience: some waits end early, some run out.
        per_round = 6 if KIND_PLIC in ctx.specs else 4
        return self.patience * per_round // 2 + watch_extra(self.points, self.rounds)


@dataclass(frozen=True)
class ClaimHold:
    """A driver polling the PLIC and holding what it claims. With interrupts masked: the
    `prelude` chunks (which may raise a line), then up to `tries` claims, watching `points`
    between them; a claimed source is held for `rounds` watch rounds before it is serviced
    and completed. While it is held its line may stay high with its pending bit clear, a
    state that snapshots, stops and seeks landing there must keep."""

    prelude: tuple[Chunk, ...]
    tries: int
    rounds: int
    points: tuple[WatchPoint, ...]
    feature: ClassVar[str | None] = "plic"

    def lines(self, ctx: Ctx, tag: str) -> list[str]:
        out = [ints_off()]
        for index, chunk in enumerate(self.prelude):
            out += chunk.lines(ctx, f"{tag}_p{index}")
        return [
            *out,
            f"li      t3, {HASH_MULTIPLIER}",
            f"li      s1, {max(1, self.tries)}",
            f"{tag}_try:",
            "li      t0, PLIC_CLAIM",
            "lw      a7, 0(t0)",
            *hash_into("s11", "a7"),
            f"bnez    a7, {tag}_held",
            *watch_round(self.points, "s11"),
            "addi    s1, s1, -1",
            f"bnez    s1, {tag}_try",
            f"j       {tag}_done",
            f"{tag}_held:",
            *watch_loop(self.points, self.rounds, "s1", "s11", f"{tag}_hold"),
            "call    service_source",  # keeps a7
            "li      t0, PLIC_CLAIM",
            "sw      a7, 0(t0)",
            *bump("cnt_poll"),
            f"{tag}_done:",
            ints_on(),
        ]

    def extra_insns(self, ctx: Ctx) -> int:
        # Expect an early claim to find something (a prelude that raised a line).
        nested = sum(estimated_extra(chunk, ctx) for chunk in self.prelude)
        return nested + watch_extra(self.points, self.rounds)


def unmasks(chunk: Chunk, ctx: Ctx) -> bool:
    """Whether a chunk sets mstatus.MIE or waits (never inside a masked section: it would
    end the section early, and a WFI there could wake for an interrupt it does not take)."""
    return any(line in (ints_on(), "wfi") for line in chunk.lines(ctx, "probe"))


def estimated_extra(chunk: Chunk, ctx: Ctx) -> int:
    """Instructions a chunk's loops run beyond one pass over its lines (0: no loop)."""
    extra = getattr(chunk, "extra_insns", None)
    return 0 if extra is None else int(extra(ctx))


def chunk_feature(chunk: Chunk) -> str | None:
    if isinstance(chunk, GenericAccess):
        return USER_FEATURE_PREFIX + chunk.device
    return chunk.feature
