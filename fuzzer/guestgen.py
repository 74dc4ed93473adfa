"""Structured guest programs: a plan (`fuzzer.guestplan`, drawn by `fuzzer.strategies`)
written as assembly source for `vm.asm`.

A program is a prologue (trap vector, stacks, the enabled devices programmed, interrupts
on), a body of chunks (`fuzzer.guestchunks`), an epilogue through the finisher (pass), then
the trap handler, its subroutines and the pages they use. The plan is plain frozen records;
`render(plan, config)` is a pure function of them, so a scenario carries only the source.
After a run, `read_records` and `source_counts` read what the handler saw.

Termination, which every plan keeps by construction (a run may still end at its budget,
which is not a failure):

- Loops are counted (`s1`, which nothing else in the body writes; the handler's hold
  counts in a0) and never nest. A watch waiting for the interrupt state to change waits a
  bounded number of rounds.
- Every WFI runs with mstatus.MIE off (so a wake-up between the check and the WFI is not
  lost: a pending interrupt makes WFI return at once) behind a source that will fire: a
  CLINT timer armed just before, or, checked at run time, a block request in flight or an
  RTC alarm running whose interrupt reaches the hart. With neither it is skipped.
- Chunks that mask interrupts (threshold, priority, enable, mstatus.MIE, UART DLAB) put
  the prologue's values back before they end, so the handler always sees what the
  prologue set up and the WFI checks above stay true. A masked section (ClaimHold) keeps
  only chunks that neither unmask nor wait, and completes what it claimed.
- DMA (block reads, the NIC's ring) lands only in the data page, the DMA area or the
  victim code page, never on the handler, its records or the stacks; the victim's two
  versions are both valid code of the same shape, so any mix of them runs.
- The handler leaves nothing pending it could re-enter for without progress: it clears
  msip, re-arms or disarms mtimecmp, drains the UART, acknowledges block completions and
  NIC status, clears the RTC interrupt, and claims at most CLAIMS_PER_TRAP sources.

Registers: s0 points into the middle of the data page (never written by the body), s1 counts
loops, s10 counts the body's repetitions, s11 accumulates what MMIO reads returned (so they
reach the state digest; watches hash into it, in order), sp is the main stack (mscratch
holds the trap stack). ALU chunks use ALU_REGS only. The handler saves ra, t0-t6 and
a0-a7, the only registers it and its subroutines touch (what it sees while it holds a
source goes to the `hold_acc` record).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fuzzer.guestchunks import (
    VICTIM_CODE,
    VICTIM_TWIN,
    alarm_lines,
    estimated_extra,
    host_wake_checks,
    ring_lines,
)
from fuzzer.guestplan import (
    DATA_SIZE,
    DMA_SIZE,
    HASH_MULTIPLIER,
    KIND_BLOCK,
    KIND_CLINT,
    KIND_ENTROPY,
    KIND_FINISHER,
    KIND_NIC,
    KIND_PLIC,
    KIND_RTC,
    KIND_UART,
    RING_SIZE,
    RING_SLOTS_MAX,
    STACK_SIZE,
    TRAP_STACK_SIZE,
    TX_FRAME,
    VICTIM_WORDS,
    Ctx,
    GuestPlan,
    NicSetup,
    PlicSetup,
    RtcSetup,
    UartSetup,
    accumulate,
    bump,
    instructions,
    ints_off,
    ints_on,
    load_insn,
    watch_loop,
    watch_round,
)
from vm.config import MachineConfig
from vm.devices import block, clint, entropy, nic, plic, rtc, uart
from vm.devices.finisher import FINISHER_PASS
from vm.memory import RAM_BASE

CAUSE_INSN_ACCESS_FAULT = 1
CLAIMS_PER_TRAP = 8
UART_DRAIN_MAX = 24  # bytes the handler takes per interrupt (the FIFO holds 16)
BLOCK_DRAIN_MAX = block.QUEUE_DEPTH + 2
TRACE_SLOTS = 64  # mcause ring the handler keeps
UART_RX_BYTES = 256

# The handler's records, in order: label -> words (tests read them after a run).
RECORDS: Mapping[str, int] = {
    "cnt_exc": 16,  # per exception cause (mod 16)
    "cnt_src": plic.NUM_SOURCES,  # per PLIC source claimed
    "cnt_msi": 1,
    "cnt_mti": 1,
    "cnt_mei": 1,
    "cnt_spurious": 1,  # an MEI with nothing to claim
    "cnt_irq_other": 1,
    "cnt_poll": 1,  # claims the body made itself (PlicPoll)
    "cnt_uart_rx": 1,
    "cnt_blk_done": 1,
    "cnt_blk_err": 1,
    "cnt_nic_rx": 1,
    "cnt_nic_tx": 1,
    "cnt_nic_txerr": 1,
    "cnt_rtc": 1,
    "mtval_acc": 1,
    "mepc_acc": 1,
    "uart_acc": 1,
    "blk_id_acc": 1,
    "nic_len_acc": 1,
    "nic_data_acc": 1,
    "entropy_acc": 1,
    "user_acc": 1,
    "hold_acc": 1,  # what the handler saw while it held a source
    "trap_acc": 1,  # what it saw entering each trap
    "rtc_time": 2,
    "tick_ticks": 1,  # the handler's timer re-arm, in ticks (0: disarm)
    "victim_write_id": 1,
    "victim_ready": 1,
    "trace_idx": 1,
    "trace": TRACE_SLOTS,
    "uart_rx_idx": 1,
}


# -- the program ------------------------------------------------------------------------------


def render(plan: GuestPlan, config: MachineConfig) -> str:
    """The plan as assembly source (base RAM_BASE)."""
    ctx = Ctx(plan, config)
    parts = [
        _equates(ctx),
        "    .text",
        "    .globl  _start",
        "_start:",
        *_indent(_prologue(ctx)),
        f"    li      s10, {max(1, plan.setup.repeat)}",
        "body:",
    ]
    for index, chunk in enumerate(plan.chunks):
        parts.append(f"    # chunk {index}: {type(chunk).__name__}")
        parts += _indent(chunk.lines(ctx, f"c{index}"))
    parts += [
        "    addi    s10, s10, -1",
        "    beqz    s10, body_end",
        "    j       body",  # a jal: the body may be longer than a branch reaches
        "body_end:",
        *_indent(_epilogue(ctx)),
        *_handler(ctx),
        *_subroutines(ctx),
        *_pages(ctx),
    ]
    return "\n".join(parts) + "\n"


def _indent(lines: Sequence[str]) -> list[str]:
    return [line if line.endswith(":") else f"    {line}" for line in lines]


def _equates(ctx: Ctx) -> str:
    values: dict[str, int] = {}
    specs = ctx.specs
    table: Mapping[str, Mapping[str, int]] = {
        KIND_FINISHER: {"FINISHER": 0},
        KIND_CLINT: {
            "CLINT_MSIP": clint.MSIP,
            "CLINT_MTIMECMP": clint.MTIMECMP_LO,
            "CLINT_MTIME": clint.MTIME_LO,
        },
        KIND_PLIC: {
            "PLIC": 0,
            "PLIC_PENDING": plic.PENDING_BASE,
            "PLIC_ENABLE": plic.ENABLE_BASE,
            "PLIC_THRESHOLD": plic.THRESHOLD,
            "PLIC_CLAIM": plic.CLAIM_COMPLETE,
        },
        KIND_UART: {"UART": 0},
        KIND_RTC: {"RTC": 0},
        KIND_BLOCK: {"BLK": 0},
        KIND_NIC: {"NIC": 0},
        KIND_ENTROPY: {"ENTROPY": 0},
    }
    for kind, names in table.items():
        spec = specs.get(kind)
        if spec is not None:
            values.update({name: spec.base + offset for name, offset in names.items()})
    if ctx.plan.setup.victim_sector is not None:
        values["VICTIM_SECTOR"] = ctx.plan.setup.victim_sector
    values["RAM_END"] = RAM_BASE + ctx.config.ram_size
    return "\n".join(f"    .equ    {name}, {value:#x}" for name, value in values.items())


def _prologue(ctx: Ctx) -> list[str]:
    setup = ctx.plan.setup
    out = [
        "la      sp, stack_top",
        "la      t0, trap_stack_top",
        "csrw    mscratch, t0",
        "la      s0, data_page + 0x800",
        "li      s1, 0",
        "li      s11, 0",
    ]
    out += (
        ["la      t0, trap_vector", "ori     t0, t0, 1"] if setup.vectored else ["la      t0, trap"]
    )
    out.append("csrw    mtvec, t0")
    if KIND_CLINT in ctx.specs:
        out.append("call    disarm_timer")  # mtimecmp is 0 at power-on: MTIP is high
    if setup.uart is not None:
        out += _uart_setup(setup.uart)
    if setup.plic is not None:
        out += _plic_setup(setup.plic)
    if setup.rtc is not None:
        out += _rtc_setup(setup.rtc)
    if setup.nic is not None:
        out += _nic_setup(setup.nic)
    if setup.entropy_enable:
        out += ["li      t0, ENTROPY", "li      t1, 1", f"sw      t1, {entropy.CTRL}(t0)"]
    if setup.victim_sector is not None:
        out += _victim_setup()
    for index, chunk in enumerate(setup.start):
        out += chunk.lines(ctx, f"start{index}")
    if setup.first_timer is not None:
        out += [f"li      a0, {setup.first_timer}", "call    set_timer"]
    return [*out, f"li      t0, {setup.mie}", "csrw    mie, t0", ints_on()]


def _uart_setup(setup: UartSetup) -> list[str]:
    out = ["li      t0, UART"]
    if setup.divisor is not None:
        out += [
            f"li      t1, {setup.lcr | uart.LCR_DLAB}",
            f"sb      t1, {uart.LCR}(t0)",
            f"li      t1, {setup.divisor & 0xFF}",
            f"sb      t1, {uart.RBR_THR_DLL}(t0)",
            f"li      t1, {setup.divisor >> 8 & 0xFF}",
            f"sb      t1, {uart.IER_DLM}(t0)",
        ]
    return [
        *out,
        f"li      t1, {setup.lcr}",
        f"sb      t1, {uart.LCR}(t0)",
        f"li      t1, {setup.fcr}",
        f"sb      t1, {uart.IIR_FCR}(t0)",
        f"li      t1, {setup.mcr}",
        f"sb      t1, {uart.MCR}(t0)",
        f"li      t1, {setup.ier}",
        f"sb      t1, {uart.IER_DLM}(t0)",
    ]


def _plic_setup(setup: PlicSetup) -> list[str]:
    out = ["li      t0, PLIC"]
    for source, priority in setup.priorities:
        out += [f"li      t1, {priority}", f"sw      t1, {4 * source}(t0)"]
    out.append("li      t0, PLIC_ENABLE")
    for word, mask in sorted(setup.enable_words().items()):
        out += [f"li      t1, {mask:#x}", f"sw      t1, {4 * word}(t0)"]
    return [
        *out,
        "li      t0, PLIC_THRESHOLD",
        f"li      t1, {setup.threshold}",
        "sw      t1, 0(t0)",
    ]


def _rtc_setup(setup: RtcSetup) -> list[str]:
    out = ["li      t0, RTC", f"li      t1, {int(setup.irq)}", f"sw      t1, {rtc.IRQ_ENABLED}(t0)"]
    if setup.alarm_ns is not None:
        out += alarm_lines(setup.alarm_ns)
    return out


def _nic_setup(setup: NicSetup) -> list[str]:
    return [
        *ring_lines(setup.place, setup.slots),
        "li      t0, NIC",
        f"li      t1, {setup.mask}",
        f"sw      t1, {nic.INT_MASK}(t0)",
        f"li      t1, {int(setup.rx)}",
        f"sw      t1, {nic.CTRL}(t0)",
    ]


def _victim_setup() -> list[str]:
    """WRITE the victim's twin to VICTIM_SECTOR; the handler notes when it completed."""
    return [
        "li      t0, BLK",
        "li      t1, VICTIM_SECTOR",
        f"sw      t1, {block.SECTOR}(t0)",
        "la      t1, victim_twin",
        f"sw      t1, {block.ADDRESS}(t0)",
        "li      t1, 1",
        f"sw      t1, {block.COUNT}(t0)",
        f"li      t1, {block.CMD_WRITE}",
        f"sw      t1, {block.COMMAND}(t0)",
        f"lw      t1, {block.SUBMIT_RESULT}(t0)",
        "bnez    t1, victim_setup_done",
        f"lw      t1, {block.LAST_ID}(t0)",
        "la      t2, victim_write_id",
        "sw      t1, 0(t2)",
        "victim_setup_done:",
    ]


def _epilogue(ctx: Ctx) -> list[str]:
    final_watch = ctx.plan.setup.final_watch
    # A driver polling for what is still in flight before it sleeps on it.
    out = [] if final_watch is None else final_watch.lines(ctx, "final")
    checks = host_wake_checks(ctx, "drain_wfi")
    if ctx.plan.setup.final_waits and checks:
        # Let requests in flight and alarms running complete: host time jumps while the
        # hart sleeps (unless a virtual timer is armed), so this is where they land.
        out += [
            f"li      s1, {ctx.plan.setup.final_waits}",
            "drain_next:",
            ints_off(),
            *checks,
            "j       drain_done",
            "drain_wfi:",
            "wfi",
            ints_on(),
            "addi    s1, s1, -1",
            "bnez    s1, drain_next",
            "drain_done:",
        ]
    out.append(ints_off())
    if KIND_CLINT in ctx.specs:
        out.append("call    disarm_timer")
    if KIND_FINISHER in ctx.specs:
        out += ["li      t0, FINISHER", f"li      t1, {FINISHER_PASS:#x}", "sw      t1, 0(t0)"]
    return [*out, "finish_spin:", "j       finish_spin"]


_SAVED = ("ra", "t0", "t1", "t2", "t3", "t4", "t5", "t6",
          "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7")  # fmt: skip
FRAME = 4 * len(_SAVED)


def _handler(ctx: Ctx) -> list[str]:
    setup = ctx.plan.setup
    out: list[str] = []
    if setup.vectored:
        # Vectored: exceptions at the base, interrupt n at base + 4n; all go to `trap`.
        out += ["    .align  6", "trap_vector:", *["    j       trap"] * 16]
    body = [
        "csrrw   sp, mscratch, sp",
        f"addi    sp, sp, -{FRAME}",
        *[f"sw      {reg}, {4 * i}(sp)" for i, reg in enumerate(_SAVED)],
        "csrr    a0, mcause",
        "la      t0, trace_idx",
        "lw      t1, 0(t0)",
        "addi    t2, t1, 1",
        "sw      t2, 0(t0)",
        f"andi    t1, t1, {TRACE_SLOTS - 1}",
        "slli    t1, t1, 2",
        "la      t2, trace",
        "add     t2, t2, t1",
        "sw      a0, 0(t2)",
        *_trap_watch(ctx),
        "bltz    a0, trap_irq",
        # An exception: count it by cause, note mtval, skip the instruction (a fetch
        # fault has no instruction to skip: return to the caller in ra instead).
        "andi    t0, a0, 15",
        "slli    t0, t0, 2",
        *bump("cnt_exc", "t0"),
        "csrr    t0, mtval",
        *accumulate("mtval_acc", "t0"),
        f"li      t0, {CAUSE_INSN_ACCESS_FAULT}",
        "beq     a0, t0, trap_fetch_fault",
        "csrr    t0, mepc",
        "addi    t0, t0, 4",
        "csrw    mepc, t0",
        "j       trap_return",
        "trap_fetch_fault:",
        "lw      t0, 0(sp)",
        "csrw    mepc, t0",
        "j       trap_return",
        "trap_irq:",
        "slli    a0, a0, 1",
        "srli    a0, a0, 1",
        "li      t0, 3",
        "beq     a0, t0, trap_msi",
        "li      t0, 7",
        "beq     a0, t0, trap_mti",
        "li      t0, 11",
        "beq     a0, t0, trap_mei",
        *bump("cnt_irq_other"),
        "j       trap_return",
        "trap_msi:",
        *(["li      t0, CLINT_MSIP", "sw      zero, 0(t0)"] if KIND_CLINT in ctx.specs else []),
        *bump("cnt_msi"),
        "j       trap_return",
        "trap_mti:",
        *bump("cnt_mti"),
        "csrr    t0, mepc",
        *accumulate("mepc_acc", "t0"),
        *_handler_entropy(ctx),
        *_mti_rearm(ctx),
        "j       trap_return",
        "trap_mei:",
        *bump("cnt_mei"),
        *_handler_entropy(ctx),
        *(["call    claim_loop", "bnez    a3, trap_return"] if KIND_PLIC in ctx.specs else []),
        *bump("cnt_spurious"),
        "trap_return:",
        *[f"lw      {reg}, {4 * i}(sp)" for i, reg in enumerate(_SAVED)],
        f"addi    sp, sp, {FRAME}",
        "csrrw   sp, mscratch, sp",
        "mret",
    ]
    return [*out, "    .align  2", "trap:", *_indent(body)]


def _trap_watch(ctx: Ctx) -> list[str]:
    """Read the setup's trap points at every trap's entry, into `trap_acc`: a timer tick or
    an exception samples device state at an icount of the guest's own choosing, where a
    line a host-side timer or bottom half raised may or may not be up yet."""
    points = ctx.plan.setup.trap_points
    if not points:
        return []
    return [
        "la      t0, trap_acc",
        "lw      a1, 0(t0)",
        f"li      t3, {HASH_MULTIPLIER}",
        *watch_round(points, "a1"),
        "la      t0, trap_acc",
        "sw      a1, 0(t0)",
    ]


def _handler_entropy(ctx: Ctx) -> list[str]:
    if not ctx.plan.setup.handler_entropy or KIND_ENTROPY not in ctx.specs:
        return []
    return [
        "li      t0, ENTROPY",
        f"lw      t1, {entropy.DATA}(t0)",
        *accumulate("entropy_acc", "t1"),
    ]


def _mti_rearm(ctx: Ctx) -> list[str]:
    if KIND_CLINT not in ctx.specs:
        return []
    return [
        "la      t0, tick_ticks",
        "lw      a0, 0(t0)",
        "beqz    a0, trap_mti_disarm",
        "call    set_timer",
        "j       trap_return",
        "trap_mti_disarm:",
        "call    disarm_timer",
    ]


def _subroutines(ctx: Ctx) -> list[str]:
    out: list[str] = []
    specs = ctx.specs
    if KIND_CLINT in specs:
        out += _label(
            "set_timer",  # mtimecmp = mtime + a0 ticks (never early in between)
            [
                "li      t0, CLINT_MTIME",
                "set_timer_read:",
                "lw      t2, 4(t0)",
                "lw      t1, 0(t0)",
                "lw      t3, 4(t0)",
                "bne     t2, t3, set_timer_read",
                "add     a0, t1, a0",
                "sltu    t1, a0, t1",
                "add     t2, t2, t1",
                "li      t0, CLINT_MTIMECMP",
                "li      t1, -1",
                "sw      t1, 0(t0)",
                "sw      t2, 4(t0)",
                "sw      a0, 0(t0)",
                "ret",
            ],
        )
        out += _label(
            "disarm_timer",
            ["li      t0, CLINT_MTIMECMP", "li      t1, -1", "sw      t1, 4(t0)",
             "sw      t1, 0(t0)", "ret"],
        )  # fmt: skip
    if KIND_RTC in specs:
        out += _label(
            "rtc_alarm_in",  # the alarm a0 ns ahead of the RTC's count
            [
                "li      t0, RTC",
                f"lw      t1, {rtc.TIME_LOW}(t0)",
                f"lw      t2, {rtc.TIME_HIGH}(t0)",
                "add     t3, t1, a0",
                "sltu    t1, t3, t1",
                "add     t2, t2, t1",
                f"sw      t2, {rtc.ALARM_HIGH}(t0)",
                f"sw      t3, {rtc.ALARM_LOW}(t0)",
                "ret",
            ],
        )
    if KIND_PLIC in specs:
        out += _claim_loop(ctx)
    return out


def _label(name: str, body: list[str]) -> list[str]:
    return [f"{name}:", *_indent(body)]


def _claim_loop(ctx: Ctx) -> list[str]:
    """claim_loop: claim, service and complete up to CLAIMS_PER_TRAP sources (a3 = how
    many); service_source dispatches on the source in a7. Clobbers t*, a0-a7."""
    out = _label(
        "claim_loop",
        [
            "addi    sp, sp, -16",
            "sw      ra, 0(sp)",
            f"li      a2, {CLAIMS_PER_TRAP}",
            "li      a3, 0",
            "claim_next:",
            "li      t0, PLIC_CLAIM",
            "lw      a7, 0(t0)",
            "beqz    a7, claim_done",
            "addi    a3, a3, 1",
            *_hold(ctx),
            "call    service_source",
            "li      t0, PLIC_CLAIM",
            "sw      a7, 0(t0)",
            "addi    a2, a2, -1",
            "bnez    a2, claim_next",
            "claim_done:",
            "lw      ra, 0(sp)",
            "addi    sp, sp, 16",
            "ret",
        ],
    )
    dispatch = ["slli    t0, a7, 2", *bump("cnt_src", "t0")]
    services: list[str] = []
    for irq, label, body in _services(ctx):
        dispatch += [f"li      t0, {irq}", f"beq     a7, t0, {label}"]
        services += _label(label, [*body, "ret"])
    return [*out, *_label("service_source", [*dispatch, "ret"]), *services]


def _hold(ctx: Ctx) -> list[str]:
    """Hold the source claimed in a7 a while, watching (a driver that defers its work):
    its line may stay high with its pending bit clear all along. Clobbers t*, a0, a5."""
    setup = ctx.plan.setup
    if not setup.hold_rounds:
        return []
    return [
        f"li      t3, {HASH_MULTIPLIER}",
        "mv      a5, a7",
        *watch_loop(setup.hold_points, setup.hold_rounds, "a0", "a5", "claim_hold"),
        *accumulate("hold_acc", "a5"),
    ]


def _services(ctx: Ctx) -> list[tuple[int, str, list[str]]]:
    """(PLIC source, label, body) for every device whose interrupt the plan enables."""
    setup = ctx.plan.setup
    features = ctx.plan.features
    found: list[tuple[int, str, list[str]]] = []
    specs = ctx.specs
    table = (
        (KIND_UART, "uart", "svc_uart", _svc_uart),
        (KIND_BLOCK, "block", "svc_blk", _svc_block),
        (KIND_NIC, "nic", "svc_nic", _svc_nic),
        (KIND_RTC, "rtc", "svc_rtc", _svc_rtc),
    )
    for kind, feature, label, service in table:
        spec = specs.get(kind)
        if spec is not None and spec.irq is not None and feature in features:
            found.append((spec.irq, label, service(ctx)))
    for index, generic in enumerate(setup.generic):
        body: list[str] = []
        for address, width in generic.reads:
            body += [
                f"li      t0, {address:#x}",
                f"{load_insn(width)}     t1, 0(t0)",
                *accumulate("user_acc", "t1"),
            ]
        found.append((generic.irq, f"svc_user{index}", body))
    return found


def _svc_uart(ctx: Ctx) -> list[str]:
    """Until IIR shows nothing: read LSR (clears OE), take a byte while DR is set."""
    return [
        "li      a1, UART",
        f"li      a4, {UART_DRAIN_MAX}",
        "svc_uart_next:",
        f"lbu     t0, {uart.IIR_FCR}(a1)",
        *accumulate("uart_acc", "t0"),
        "andi    t0, t0, 1",
        "bnez    t0, svc_uart_done",
        f"lbu     t2, {uart.LSR}(a1)",
        "andi    t2, t2, 1",
        "beqz    t2, svc_uart_more",
        f"lbu     t1, {uart.RBR_THR_DLL}(a1)",
        "la      t2, uart_rx_idx",
        "lw      t3, 0(t2)",
        "addi    t4, t3, 1",
        "sw      t4, 0(t2)",
        f"andi    t3, t3, {UART_RX_BYTES - 1}",
        "la      t2, uart_rx",
        "add     t2, t2, t3",
        "sb      t1, 0(t2)",
        *bump("cnt_uart_rx"),
        "svc_uart_more:",
        "addi    a4, a4, -1",
        "bnez    a4, svc_uart_next",
        "svc_uart_done:",
    ]


def _svc_block(ctx: Ctx) -> list[str]:
    """Acknowledge every waiting completion (bounded); note the victim's twin landing."""
    victim = (
        [
            "la      t3, victim_write_id",
            "lw      t3, 0(t3)",
            "bne     t1, t3, svc_blk_more",
            "li      t4, 1",
            "la      t3, victim_ready",
            "sw      t4, 0(t3)",
        ]
        if ctx.plan.setup.victim_sector is not None
        else []
    )
    return [
        "li      a1, BLK",
        f"li      a4, {BLOCK_DRAIN_MAX}",
        "svc_blk_next:",
        f"lw      t0, {block.DONE_COUNT}(a1)",
        "beqz    t0, svc_blk_done",
        f"lw      t1, {block.DONE_ID}(a1)",
        f"lw      t2, {block.DONE_RESULT}(a1)",
        f"sw      zero, {block.DONE_ACK}(a1)",
        *bump("cnt_blk_done"),
        *accumulate("blk_id_acc", "t1"),
        "beqz    t2, svc_blk_ok",
        *bump("cnt_blk_err"),
        "svc_blk_ok:",
        *victim,
        "svc_blk_more:",
        "addi    a4, a4, -1",
        "bnez    a4, svc_blk_next",
        "svc_blk_done:",
    ]


def _svc_nic(ctx: Ctx) -> list[str]:
    """Acknowledge INT_STATUS (write 1 to clear), then drain every FULL slot of the ring
    wherever it is now (a body chunk may have moved it)."""
    return [
        "li      a1, NIC",
        f"lw      a6, {nic.INT_STATUS}(a1)",
        f"sw      a6, {nic.INT_STATUS}(a1)",
        f"andi    t0, a6, {nic.INT_TX_DONE}",
        "beqz    t0, svc_nic_txerr",
        *bump("cnt_nic_tx"),
        "svc_nic_txerr:",
        f"andi    t0, a6, {nic.INT_TX_ERROR}",
        "beqz    t0, svc_nic_ring",
        *bump("cnt_nic_txerr"),
        "svc_nic_ring:",
        f"lw      a4, {nic.RX_RING_BASE}(a1)",
        f"lw      a5, {nic.RX_RING_SIZE}(a1)",
        f"li      t0, {RING_SLOTS_MAX}",
        "bleu    a5, t0, svc_nic_slot",
        "mv      a5, t0",
        "svc_nic_slot:",
        "beqz    a5, svc_nic_done",
        "lw      t2, 0(a4)",
        "bgez    t2, svc_nic_free",
        *bump("cnt_nic_rx"),
        "li      t3, 0xffff",
        "and     t3, t2, t3",
        *accumulate("nic_len_acc", "t3"),
        "lw      t3, 4(a4)",
        *accumulate("nic_data_acc", "t3"),
        "sw      zero, 0(a4)",
        "svc_nic_free:",
        f"li      t0, {nic.SLOT_SIZE}",
        "add     a4, a4, t0",
        "addi    a5, a5, -1",
        "j       svc_nic_slot",
        "svc_nic_done:",
    ]


def _svc_rtc(ctx: Ctx) -> list[str]:
    """Clear the interrupt, note the time, maybe set the next alarm."""
    setup = ctx.plan.setup.rtc
    rearm = setup.rearm_ns if setup is not None else 0
    out = [
        "li      a1, RTC",
        "li      t0, 1",
        f"sw      t0, {rtc.CLEAR_INTERRUPT}(a1)",
        f"lw      t1, {rtc.TIME_LOW}(a1)",
        f"lw      t2, {rtc.TIME_HIGH}(a1)",
        "la      t3, rtc_time",
        "sw      t1, 0(t3)",
        "sw      t2, 4(t3)",
        *bump("cnt_rtc"),
    ]
    if rearm:
        out += [
            f"li      t0, {rearm}",
            "add     t3, t1, t0",
            "sltu    t4, t3, t1",
            "add     t2, t2, t4",
            f"sw      t2, {rtc.ALARM_HIGH}(a1)",
            f"sw      t3, {rtc.ALARM_LOW}(a1)",
        ]
    return out


def _pages(ctx: Ctx) -> list[str]:
    setup = ctx.plan.setup
    out: list[str] = []
    if setup.victim_sector is not None:
        # The victim and its twin, each one sector, alone in a page of code: DMA and CPU
        # stores into it invalidate translated code and nothing else.
        pad = block.SECTOR_SIZE - 4 * (VICTIM_WORDS + 1)
        out += [
            "    .align  12",
            "victim:",
            *_indent([*VICTIM_CODE, "ret"]),
            f"    .space  {pad}",
            "victim_twin:",
            *_indent([*VICTIM_TWIN, "ret"]),
            f"    .space  {pad}",
            "victim_orig:",  # a pristine copy, for VictimPatch
            *_indent([*VICTIM_CODE, "ret"]),
        ]
    out += ["    .align  12", "records:"]
    for name, words in RECORDS.items():
        initial = setup.tick_ticks if name == "tick_ticks" else 0
        if words == 1:
            out.append(f"{name}:    .word   {initial}")
        else:
            out.append(f"{name}:    .space  {4 * words}")
    out += [
        "uart_rx:",
        f"    .space  {UART_RX_BYTES}",
        "tx_frame:",
        *[
            "    .byte   " + ", ".join(str(b) for b in TX_FRAME[i : i + 16])
            for i in range(0, len(TX_FRAME), 16)
        ],
        "    .align  12",
        "data_page:",
        f"    .space  {DATA_SIZE}",
        "dma_area:",
        f"    .space  {DMA_SIZE}",
        "ring_area:",
        f"    .space  {RING_SIZE}",
        "stack_bottom:",
        f"    .space  {STACK_SIZE}",
        "stack_top:",
        f"    .space  {TRAP_STACK_SIZE}",
        "trap_stack_top:",
    ]
    return out


def program_size() -> int:
    """An upper bound on RAM a generated program's pages take beyond its code."""
    return 0x1000 * 3 + DATA_SIZE + DMA_SIZE + RING_SIZE + STACK_SIZE + TRAP_STACK_SIZE


def estimated_length(plan: GuestPlan, config: MachineConfig) -> int:
    """Roughly how many instructions the prologue, body and epilogue execute (loops
    counted, the handler not): where stop, snapshot and sample points are worth drawing."""
    ctx = Ctx(plan, config)
    body = 3
    for index, chunk in enumerate(plan.chunks):
        body += instructions(chunk.lines(ctx, f"c{index}")) + estimated_extra(chunk, ctx)
    fixed = instructions(_prologue(ctx)) + instructions(_epilogue(ctx)) + 1
    final = plan.setup.final_watch
    for chunk in (*plan.setup.start, *(() if final is None else (final,))):
        fixed += estimated_extra(chunk, ctx)
    return fixed + max(1, plan.setup.repeat) * body


@dataclass(frozen=True)
class GuestProgram:
    """A rendered plan: the source, the features it exercises, its estimated length."""

    plan: GuestPlan
    source: str
    features: tuple[str, ...] = field(default=())
    estimate: int = 0


def read_records(read_bytes, symbols: Mapping[str, int]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The handler's one-word records after a run: `read_bytes(addr, n)` reads RAM (e.g.
    `machine.bus.read_bytes`), `symbols` are the assembled program's labels."""
    out = {}
    for name, words in RECORDS.items():
        if words == 1:
            out[name] = int.from_bytes(read_bytes(symbols[name], 4), "little")
    return out


def source_counts(read_bytes, symbols: Mapping[str, int]) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """Claims per PLIC source (non-zero only) after a run."""
    raw = read_bytes(symbols["cnt_src"], 4 * plic.NUM_SOURCES)
    counts = (int.from_bytes(raw[i : i + 4], "little") for i in range(0, len(raw), 4))
    return {source: n for source, n in enumerate(counts) if n}
