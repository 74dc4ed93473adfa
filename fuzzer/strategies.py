"""Hypothesis strategies for scenarios (the fuzzer's input side).

    @given(scenarios())
    def test_something(scenario): ...

`scenarios()` draws a machine configuration (unless given), a structured guest program
(`guest_programs`), host stimulus (`stimulus_schedules`), host seeds and profile, and stop,
snapshot, seek and sample points. Swarm testing: each program enables a random subset of
the features in `fuzzer.guestgen.FEATURES` the configuration allows (and of its user
devices) and draws chunks only for those.

Stop, snapshot, seek and sample points are drawn where the run is (see `scenarios`): the
program, its stimulus and its host are recorded once first, and the points go before the
run's end, many shortly after its log's events.

Shrinking: everything is drawn so that Hypothesis's choice-sequence shrinker moves toward
the simple end: features are booleans (toward off), chunk lists toward fewer chunks, each
`st.one_of` lists its simplest alternative first (ALU before memory before MMIO), integers
toward 0, and stimulus, stops, snapshots, seeks and samples are lists (toward none).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from fuzzer import guestchunks as gk
from fuzzer import guestgen as g
from fuzzer import guestplan as gp
from fuzzer.probe import ConfigProbe, DeviceProbe, probe
from fuzzer.scenario import DEFAULT_BUDGET, Scenario
from vm.backends import Stimulus
from vm.config import DEFAULT_DEVICES, DeviceSpec, MachineConfig
from vm.devices import block, entropy, nic, plic, uart
from vm.hostmodel import HostProfile
from vm.replay import ReplayMode
from vm.replaylog import EventKind, read_log
from vm.slirp import BROADCAST_MAC, HOST_MAC
from vm.trace import BuiltinTarget, Stop

FULL_DEVICES: tuple[DeviceSpec, ...] = (
    *DEFAULT_DEVICES,
    entropy.default_spec(),
    block.default_spec(),
    nic.default_spec(),
)
DEFAULT_MAX_CHUNKS = 16
RAM_SIZES = (1 << 20, 256 << 10, 8 << 20)
ICOUNT_SHIFTS = (0, 2, 4, 7, 10)
# Hosts to meet (None: vm.hostmodel's default). With the default profile the disk takes up
# to 5 ms of host time, millions of busy instructions; a WFI-waiting guest covers that, a
# busy one does not, so some scenarios get a fast disk (and a host that slices finely).
HOST_PROFILES: tuple[HostProfile | None, ...] = (
    None,
    HostProfile(block_latency_ns_min=1_000, block_latency_ns_max=20_000),
    HostProfile(
        quantum_insns_min=8,
        quantum_insns_max=2_000,
        block_latency_ns_min=200,
        block_latency_ns_max=5_000,
    ),
)
EARLY_ICOUNT = 4_000  # generated programs mostly finish within a few thousand instructions
EARLY_HOST_NS = 20_000  # ... which takes some microseconds of host time
HANDLER_ALLOWANCE = 500  # instructions the trap handler adds to a run, roughly
HOST_NS_PER_INSN = 3  # the default profile's slowest host
GUEST_MAC = gp.GUEST_MAC
ETHERTYPES = (0x88B5, 0x0800, 0x0806, 0x86DD)

MAX_STIMULUS_EVENTS = 6
# Interrupt enables, simplest interrupting value first (the UART's THR-empty interrupt
# comes at once; IER.MSI never fires here).
UART_IERS = (uart.IER_THRI, 0x07, uart.IER_RDI, uart.IER_RDI | uart.IER_THRI, 0x05, 0x06, 0x04, 0)
NIC_MASKS = (nic.INT_ALL, nic.INT_RX, nic.INT_TX_DONE, 0x03, 0x05, 0x06, nic.INT_TX_ERROR, 0)
MAX_POINTS = 3
# Stops last from 2**10 ns up to 2**34 ns (17 s) of host time, or as long as the host model
# says: a long one costs nothing (no instruction runs), and host-side work waiting on the
# host's clock (a UART's four character times are milliseconds to seconds) happens only
# if the stop is long enough.
STOP_NS_BITS = (10, 34)
# Where points go, each entry as likely (sampled_from is uniform; the first is the simplest):
# before the run's end, shortly after a log event, anywhere in the budget.
POINT_PLACES = ("run", "event", "run", "event", "run", "event", "anywhere")
EVENT_REACH_BITS = (4, 10)  # points near a log event land up to 2**4..2**10 instructions after
WATCH_PATIENCE_MAX = 1_000
WATCH_ROUNDS_MAX = 100
CLAIM_TRIES_MAX = 200
HOLD_ROUNDS_MAX = 100


# -- configurations -------------------------------------------------------------------------


@st.composite
def machine_configs(
    draw: st.DrawFn,
    *,
    devices: Sequence[DeviceSpec] | None = None,
    planted_bugs: Sequence[str] = (),
    user_devices: Sequence[DeviceSpec] = (),
) -> MachineConfig:
    """RAM size, icount shift and (unless `devices` is given) the full built-in machine
    with its NIC's and disk's options drawn; plus `user_devices` and `planted_bugs`."""
    if devices is None:
        echo = draw(st.sampled_from((None, 2_000, 20_000)))
        beacon = draw(st.sampled_from((0, 20_000)))
        nic_options = {"beacon_interval_ns": beacon} if beacon else {}
        if echo is not None:
            nic_options["echo_delay_ns"] = echo
        nic_spec = nic.default_spec()
        nic_spec = DeviceSpec(
            nic_spec.kind,
            nic_spec.name,
            nic_spec.base,
            nic_spec.irq,
            tuple(sorted(nic_options.items())),
        )
        disk = block.default_spec(pattern=draw(st.integers(0, 255)))
        devices = (*DEFAULT_DEVICES, entropy.default_spec(), disk, nic_spec)
    return MachineConfig(
        ram_size=draw(st.sampled_from(RAM_SIZES)),
        icount_shift=draw(st.sampled_from(ICOUNT_SHIFTS)),
        devices=(*devices, *user_devices),
        planted_bugs=tuple(sorted(set(planted_bugs))),
    )


def _apply(
    config: MachineConfig,
    *,
    devices: Sequence[DeviceSpec] | None,
    planted_bugs: Sequence[str],
    user_devices: Sequence[DeviceSpec],
) -> MachineConfig:
    return MachineConfig(
        ram_size=config.ram_size,
        icount_shift=config.icount_shift,
        devices=(*(config.devices if devices is None else devices), *user_devices),
        planted_bugs=tuple(sorted({*config.planted_bugs, *planted_bugs})),
    )


# -- instructions ----------------------------------------------------------------------------

R_OPS = ("add", "sub", "and", "or", "xor", "sll", "srl", "sra", "slt", "sltu")
M_OPS = ("mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu")
I_OPS = ("addi", "andi", "ori", "xori", "slti", "sltiu")
SHIFT_OPS = ("slli", "srli", "srai")
EDGE_VALUES = (0, 1, -1, 0x7FFF_FFFF, -0x8000_0000, 0x800, -2048, 31, 32, 0xFFFF_F000)
LOADS = ("lw", "lb", "lbu", "lh", "lhu")
STORES = ("sw", "sb", "sh")
CSR_READS = (
    "minstret", "mcycle", "minstreth", "mcycleh", "instret", "cycle", "instreth", "cycleh",
    "mhartid", "misa", "mstatus", "mie", "mip", "mepc", "mcause", "mtval", "mtvec",
    "mscratch", "mvendorid", "marchid", "mimpid",
)  # fmt: skip
CSR_WRITES = ("minstret", "mcycle", "minstreth", "mcycleh", "mepc", "mcause", "mtval")

regs = st.sampled_from(gp.ALU_REGS)
sources = st.sampled_from(gp.READ_REGS)
imm12 = st.integers(-2048, 2047)


def _alu_op() -> SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda op, rd, rs, imm: f"{op} {rd}, {rs}, {imm}", st.sampled_from(I_OPS),
                  regs, sources, imm12),
        st.builds(lambda op, rd, a, b: f"{op} {rd}, {a}, {b}", st.sampled_from(R_OPS), regs,
                  sources, sources),
        st.builds(lambda op, rd, a, b: f"{op} {rd}, {a}, {b}", st.sampled_from(M_OPS), regs,
                  sources, sources),
        st.builds(lambda op, rd, rs, n: f"{op} {rd}, {rs}, {n}", st.sampled_from(SHIFT_OPS),
                  regs, sources, st.integers(0, 31)),
        st.builds(lambda rd, v: f"li {rd}, {v}", regs,
                  st.one_of(st.sampled_from(EDGE_VALUES), st.integers(-(1 << 31), (1 << 32) - 1))),
        st.builds(lambda rd, v: f"lui {rd}, {v}", regs, st.integers(0, 0xFFFFF)),
    )  # fmt: skip


def _mem_op() -> SearchStrategy[str]:
    # s0 is the middle of the data page: every imm12 offset stays in RAM the program owns
    # (a word at +2047 reaches 3 bytes into the DMA area); odd offsets are misaligned
    # accesses, which complete in RAM.
    return st.one_of(
        st.builds(lambda op, rd, off: f"{op} {rd}, {off}(s0)", st.sampled_from(LOADS), regs,
                  imm12),
        st.builds(lambda op, rs, off: f"{op} {rs}, {off}(s0)", st.sampled_from(STORES), sources,
                  imm12),
    )  # fmt: skip


def _ops(op: SearchStrategy[str], max_size: int) -> SearchStrategy[tuple[str, ...]]:
    return st.lists(op, min_size=1, max_size=max_size).map(tuple)


def _csr_op() -> SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda rd, csr: f"csrr {rd}, {csr}", regs, st.sampled_from(CSR_READS)),
        st.builds(lambda csr, rs: f"csrw {csr}, {rs}", st.sampled_from(CSR_WRITES), sources),
    )


ALU_OP = _alu_op()
MEM_OP = _mem_op()
CSR_OP = _csr_op()


# -- guest programs --------------------------------------------------------------------------


class _Context:
    """What chunk strategies need to know (never the features or the drawn setup: see
    `guest_plans`), so their strategies are built once per configuration."""

    def __init__(
        self, config: MachineConfig, victim_sector: int | None, found: ConfigProbe
    ) -> None:
        self.config = config
        self.victim_sector = victim_sector
        self.specs = gp.builtin_specs(config)
        self.probe = found

    def capacity(self) -> int:
        return _capacity(self.config)


def _capacity(config: MachineConfig) -> int:
    spec = gp.builtin_specs(config).get(gp.KIND_BLOCK)
    sectors = block.DEFAULT_SECTORS if spec is None else spec.option("sectors", 0)
    return sectors if isinstance(sectors, int) and sectors > 0 else block.DEFAULT_SECTORS


def _irq_sources(config: MachineConfig, found: ConfigProbe) -> list[tuple[str, int]]:
    """(feature, PLIC source) of every device that can interrupt, in a fixed order."""
    specs = gp.builtin_specs(config)
    out = [
        (feature, specs[kind].irq)
        for kind, feature in (
            (gp.KIND_UART, "uart"),
            (gp.KIND_BLOCK, "block"),
            (gp.KIND_NIC, "nic"),
            (gp.KIND_RTC, "rtc"),
        )
        if kind in specs and specs[kind].irq is not None
    ]
    out += [(gp.USER_FEATURE_PREFIX + d.name, d.irq) for d in found.devices if d.irq is not None]
    return [(feature, irq) for feature, irq in out if irq is not None and irq < plic.NUM_SOURCES]


ChunkStrategies = Callable[[_Context], list[SearchStrategy[gp.Chunk]]]


def _cpu_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.builds(gk.Alu, _ops(ALU_OP, 6)),
        st.builds(gk.Memory, _ops(MEM_OP, 4)),
    ]


def _loop_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    body = _ops(st.one_of(ALU_OP, MEM_OP), 4)
    return [st.builds(gk.Loop, st.integers(1, 64), body)]


def _csr_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [st.builds(gk.CsrOps, _ops(CSR_OP, 3))]


def _trap_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    kinds = [k for k in gk.TRAPS if k not in gk.TRAPS_NEEDING or gk.TRAPS_NEEDING[k] in ctx.specs]
    return [st.builds(gk.Trap, st.sampled_from(kinds))]


def _timer_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.builds(gk.TimerArm, st.integers(50, 5_000)),
        st.builds(gk.MtimeOps, st.one_of(st.none(), st.integers(-200, 200))),
    ]


def _msi_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [st.just(gk.SoftIrq())]


def _wait_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [st.builds(gk.Wait, st.sampled_from(("timer", "host")), st.integers(50, 50_000))]


def watch_points(config: MachineConfig, found: ConfigProbe) -> list[gp.WatchPoint]:
    """What a watching guest may read on `config`: the CPU's mip, the built-in devices'
    status registers (gp.WATCHABLE) and the live offsets of its user devices."""
    specs = gp.builtin_specs(config)
    points = [p for kind, ps in gp.WATCHABLE.items() if kind is None or kind in specs for p in ps]
    for device in found.devices:
        width = max(device.widths)
        points += [
            gp.WatchPoint(f"{device.base + offset - offset % width:#x}", 0, width)
            for offset in device.live
        ]
    return points


def _uniform(low: int, high: int) -> SearchStrategy[int]:
    """An integer in [low, high], shrinking toward low. Where the length of a wait or a
    hold matters: in a search Hypothesis draws an integers() minimum far more often than
    any other value, while sampled_from stays uniform."""
    return st.sampled_from(range(low, high + 1))


def _watched(ctx: _Context, *, min_size: int) -> SearchStrategy[tuple[gp.WatchPoint, ...]]:
    points = watch_points(ctx.config, ctx.probe)
    return st.lists(st.sampled_from(points), min_size=min_size, max_size=3).map(tuple)


def _watches(ctx: _Context, *, min_patience: int = 0) -> SearchStrategy[gk.Watch]:
    # Patience up to a few thousand instructions: a fast disk completes within it, and the
    # host's slice after the completion often ends inside it too.
    patience = _uniform(max(1, min_patience), WATCH_PATIENCE_MAX)
    return st.builds(
        gk.Watch,
        _watched(ctx, min_size=0),
        patience if min_patience else st.one_of(st.just(0), patience),
        _uniform(1, WATCH_ROUNDS_MAX),
        st.booleans().map(_not),  # masked first: nothing is taken, every line shows
    )


def _watch_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [_watches(ctx)]


def _uart_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.builds(gk.UartRead, st.lists(st.integers(0, 7), min_size=1, max_size=6).map(tuple)),
        st.builds(gk.UartTx, st.binary(min_size=1, max_size=8), st.booleans()),
        st.builds(gk.UartWrite, st.sampled_from(sorted(gk.UART_WRITABLE)), st.integers(0, 255)),
        st.builds(gk.UartDrain, st.integers(1, 20)),
        st.builds(gk.UartDivisor, _divisors(), st.integers(0, 0x7F)),
        st.builds(gk.UartLoopback, st.binary(min_size=1, max_size=24), st.booleans()),
    ]


def _divisors() -> SearchStrategy[int]:
    return st.one_of(st.sampled_from((1, 2, 3, 12)), st.integers(0, 0xFFFF))


def _plic_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    sources = [irq for _, irq in _irq_sources(ctx.config, ctx.probe)] or [1]
    work = _ops(ALU_OP, 3)
    return [
        st.builds(gk.PlicRead, st.lists(st.integers(0, len(gk.PLIC_READABLE) - 1), min_size=1,
                                       max_size=4).map(tuple)),
        st.just(gk.PlicPoll()),
        st.builds(gk.PlicMask, st.just("threshold"), st.just(0), st.integers(0, 7), work),
        st.builds(gk.PlicMask, st.just("priority"), st.sampled_from(sources), st.integers(0, 7),
                  work),
        st.builds(gk.PlicMask, st.just("enable"), st.sampled_from(sources), st.just(0), work),
    ]  # fmt: skip


def _hold_chunks(ctx: _Context, inner: SearchStrategy[gp.Chunk]) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.builds(
            gk.ClaimHold,
            st.lists(inner, max_size=3).map(tuple),
            _uniform(1, CLAIM_TRIES_MAX),
            _uniform(1, HOLD_ROUNDS_MAX),
            _watched(ctx, min_size=0),
        )
    ]


def _block_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.builds(gk.BlockRead, st.lists(st.sampled_from(gk.BLOCK_READABLE), min_size=1,
                                        max_size=4).map(tuple)),
        st.builds(gk.BlockSubmit, st.lists(_block_request(ctx), min_size=1, max_size=5)
                  .map(tuple), st.booleans()),
        st.just(gk.BlockAck()),
    ]  # fmt: skip


# What may be wrong with a block request, at most one thing (the device reports only the
# first it finds anyway), as likely as not nothing: most requests must complete.
BLOCK_MISTAKES = (None, None, None, None, "command", "count", "address", "sector")


@st.composite
def _block_request(draw: st.DrawFn, ctx: _Context, *, mistakes: bool = True) -> gk.BlockRequest:
    capacity = ctx.capacity()
    # Sectors from here on hold the victim's twin: nothing else writes them.
    writable = capacity if ctx.victim_sector is None else ctx.victim_sector
    mistake = draw(st.sampled_from(BLOCK_MISTAKES)) if mistakes else None
    command = draw(
        st.sampled_from((0, 3) if mistake == "command" else (block.CMD_READ, block.CMD_WRITE))
    )
    count = 0 if mistake == "count" else draw(st.integers(1, 2))
    if command == block.CMD_READ:
        where = draw(st.sampled_from(sorted(gp.DMA_TARGETS)))
        last = capacity - max(count, 1)
    else:
        where = draw(st.sampled_from(sorted(gp.WRITE_SOURCES)))
        last = writable - max(count, 1)
    where = "bad" if mistake == "address" else where
    sector = capacity if mistake == "sector" else draw(st.integers(0, max(0, last)))
    if command == block.CMD_WRITE and last < 0:
        sector = capacity  # nowhere to write: a BAD_SECTOR request
    size = gp.WRITE_SOURCES.get(where, block.SECTOR_SIZE)
    offset = draw(st.integers(0, max(0, size - block.SECTOR_SIZE * max(count, 1))))
    return gk.BlockRequest(command, sector, count, where, offset)


def _dma_code_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.just(gk.VictimCall()),
        st.just(gk.VictimDma()),
        st.builds(gk.VictimPatch, st.integers(0, gp.VICTIM_WORDS - 1), st.booleans()),
    ]


def _nic_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.builds(gk.NicRead, st.lists(st.sampled_from(gk.NIC_READABLE), min_size=1,
                                      max_size=4).map(tuple)),
        st.builds(gk.NicTx, st.sampled_from(("frame", "data", "bad_length", "bad_address")),
                  st.integers(1, 2_100)),
        st.builds(gk.NicWrite, st.sampled_from(sorted(gk.NIC_WRITABLE)), st.integers(0, 7)),
        _ring(gk.NicRing),
    ]  # fmt: skip


def _ring(build: Callable[[str, int], gp.Chunk | gp.NicSetup]) -> SearchStrategy:  # type: ignore[type-arg]
    return st.sampled_from(sorted(gp.RING_PLACES)).flatmap(
        lambda place: st.integers(0, gp.RING_PLACES[place]).map(lambda n: build(place, n))
    )


def _rtc_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.just(gk.RtcRead()),
        st.builds(gk.RtcAlarm, st.one_of(st.just(0), st.integers(1_000, 200_000))),
        st.builds(gk.RtcWrite, st.sampled_from(sorted(gk.RTC_WRITABLE)), st.integers(0, 3)),
    ]


def _entropy_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    return [
        st.builds(gk.EntropyRead, st.integers(1, 4)),
        st.builds(gk.EntropyWrite, st.sampled_from(sorted(gk.ENTROPY_WRITABLE)),
                  st.integers(0, 3)),
    ]  # fmt: skip


def _generic_chunks(ctx: _Context) -> list[SearchStrategy[gp.Chunk]]:
    out = []
    for device in ctx.probe.devices:
        ops = st.lists(generic_accesses(device), min_size=1, max_size=6).map(tuple)
        out.append(st.builds(gk.GenericAccess, st.just(device.name), ops))
    return out


@st.composite
def generic_accesses(draw: st.DrawFn, device: DeviceProbe) -> gk.GenericOp:
    """One load or store a device takes (its widths, aligned), at an offset the probe
    found live about half the time, anywhere in its window otherwise."""
    width = draw(st.sampled_from(device.widths[::-1]))  # the widest first
    anywhere = st.integers(0, max(0, device.size - width))
    offset = draw(st.one_of(st.sampled_from(device.live), anywhere) if device.live else anywhere)
    offset -= offset % width
    store = draw(st.booleans())
    value = draw(st.one_of(st.sampled_from((0, 1, 0xFFFF_FFFF)), st.integers(0, (1 << 32) - 1)))
    return gk.GenericOp(device.base + offset, width, store, value if store else 0)


# Chunk families, simplest first (st.one_of shrinks toward the earlier alternatives); each
# needs the feature (None: always drawn).
CHUNK_FAMILIES: tuple[tuple[str | None, ChunkStrategies], ...] = (
    (None, _cpu_chunks),
    ("loops", _loop_chunks),
    ("csr", _csr_chunks),
    ("traps", _trap_chunks),
    ("timer", _timer_chunks),
    ("msi", _msi_chunks),
    ("wfi", _wait_chunks),
    ("watch", _watch_chunks),
    ("uart", _uart_chunks),
    ("plic", _plic_chunks),
    ("block", _block_chunks),
    ("block.dma_code", _dma_code_chunks),
    ("nic", _nic_chunks),
    ("rtc", _rtc_chunks),
    ("entropy", _entropy_chunks),
    (None, _generic_chunks),
)
NestingStrategies = Callable[[_Context, SearchStrategy[gp.Chunk]], list[SearchStrategy[gp.Chunk]]]
# Families whose chunks hold other chunks (drawn from CHUNK_FAMILIES, never nested deeper),
# after those: the most complex.
NESTING_FAMILIES: tuple[tuple[str | None, NestingStrategies], ...] = (("plic", _hold_chunks),)


def available_features(config: MachineConfig, found: ConfigProbe | None = None) -> list[str]:
    """The swarm features `config` allows, in FEATURES order, then its user devices."""
    specs = gp.builtin_specs(config)
    names = [name for name, kind in gp.FEATURES.items() if kind is None or kind in specs]
    devices = found.devices if found is not None else ()
    return [*names, *(gp.USER_FEATURE_PREFIX + device.name for device in devices)]


def _parent_enabled(name: str, chosen: set[str]) -> bool:
    parent = name.partition(".")[0]
    return parent == name or parent in chosen


@st.composite
def guest_plans(
    draw: st.DrawFn, config: MachineConfig, *, max_chunks: int = DEFAULT_MAX_CHUNKS
) -> gp.GuestPlan:
    """A swarm plan for `config`: features (each a boolean, shrinking to off), the device
    setup they imply, and up to `max_chunks` body chunks of the enabled features.

    Every draw has the same shape whatever the features: the setup draws all its values
    and the chunks come from every family, those of disabled features being dropped
    afterwards. So when the shrinker switches a feature off, nothing after it is read
    differently: its chunks just disappear (were the chunk alternatives the enabled
    families only, every later chunk would change meaning and the shrink would fail)."""
    found = probe(config) if gp.generic_specs(config) else ConfigProbe((), ())
    chosen: set[str] = set()
    for name in available_features(config, found):
        if draw(st.booleans()) and _parent_enabled(name, chosen):
            chosen.add(name)
    if _victim_sector(config) is None:
        chosen.discard("block.dma_code")  # a disk too small for the victim's twin
    features = frozenset(chosen)
    chunk = _chunk_strategy(config, _victim_sector(config))
    # Bursts of chunks: Hypothesis's lists average about five elements, which leaves few
    # chunks once the disabled features' are dropped; a list of short bursts is longer,
    # and deleting a burst or one of its chunks still shrinks it. Drawn before the setup:
    # Hypothesis's first examples are random up to a point and simplest after it, and a
    # body is worth more there than a setup's details.
    bursts = draw(st.lists(st.lists(chunk, min_size=1, max_size=4), max_size=max_chunks))
    setup = _setup(draw(_setup_draws(config, found)), features, config, found)
    ctx = gp.Ctx(gp.GuestPlan(features, setup), config)
    chunks = [
        _fit(chunk, features, ctx)
        for burst in bursts
        for chunk in burst
        if _enabled(chunk, features)
    ]
    return gp.GuestPlan(features, setup, tuple(chunks[:max_chunks]))


@functools.lru_cache(maxsize=64)
def _chunk_strategy(config: MachineConfig, victim_sector: int | None) -> SearchStrategy[gp.Chunk]:
    """One chunk of any family, simplest families first (built once: building strategies
    costs more than drawing from them)."""
    found = probe(config) if gp.generic_specs(config) else ConfigProbe((), ())
    ctx = _Context(config, victim_sector, found)
    plain = [strategy for _, family in CHUNK_FAMILIES for strategy in family(ctx)]
    inner = st.one_of(plain)
    return st.one_of(
        [*plain, *(strategy for _, family in NESTING_FAMILIES for strategy in family(ctx, inner))]
    )


def _victim_sector(config: MachineConfig) -> int | None:
    """Where block.dma_code keeps the victim's twin: the last sector (None: too small)."""
    capacity = _capacity(config)
    return capacity - 1 if gp.KIND_BLOCK in gp.builtin_specs(config) and capacity >= 2 else None


def _enabled(chunk: gp.Chunk, features: frozenset[str]) -> bool:
    feature = gk.chunk_feature(chunk)
    return feature is None or feature in features


def _fit(chunk: gp.Chunk, features: frozenset[str], ctx: gp.Ctx) -> gp.Chunk:
    """A chunk adjusted to the features: MCR keeps loopback off unless it is enabled; a
    masked section keeps only the enabled chunks that leave interrupts masked."""
    if isinstance(chunk, gk.ClaimHold):
        fitted = [_fit(inner, features, ctx) for inner in chunk.prelude]
        prelude = tuple(
            inner for inner in fitted if _enabled(inner, features) and not gk.unmasks(inner, ctx)
        )
        return dataclasses.replace(chunk, prelude=prelude)
    loopback = "uart.loopback" in features
    if isinstance(chunk, gk.UartWrite) and chunk.reg == uart.MCR and not loopback:
        return gk.UartWrite(chunk.reg, chunk.value & ~uart.MCR_LOOP)
    return chunk


@dataclass(frozen=True)
class _SetupDraws:
    """Every value a setup may use, drawn whatever the features (see guest_plans)."""

    tick_insns: int
    first_insns: int | None
    uart: gp.UartSetup
    uart_loop: bool
    rtc: gp.RtcSetup
    nic: gp.NicSetup
    priorities: tuple[int, ...]  # one per _irq_sources entry
    threshold: int
    entropy_enable: bool
    final_waits: int
    repeat: int
    service_reads: tuple[tuple[tuple[int, int], ...], ...]  # one per user device with an irq
    block_start: tuple[gk.BlockRequest, ...]
    final_watch: gk.Watch
    hold_rounds: int
    hold_points: tuple[gp.WatchPoint, ...]
    trap_points: tuple[gp.WatchPoint, ...]


@dataclass(frozen=True)
class _SetupStrategies:
    """A configuration's setup strategies that take its devices (built once: building and
    validating strategies costs more than drawing from them)."""

    block_start: SearchStrategy[tuple[gk.BlockRequest, ...]]
    final_watch: SearchStrategy[gk.Watch]
    points: SearchStrategy[tuple[gp.WatchPoint, ...]]


@functools.lru_cache(maxsize=64)
def _setup_strategies(config: MachineConfig, found: ConfigProbe) -> _SetupStrategies:
    ctx = _Context(config, _victim_sector(config), found)
    return _SetupStrategies(
        block_start=st.lists(_block_request(ctx, mistakes=False), min_size=1, max_size=2).map(
            tuple
        ),
        # The epilogue always waits a while for what is in flight (its interrupt lines).
        final_watch=_watches(ctx, min_patience=1),
        points=_watched(ctx, min_size=0),
    )


# Once a device's feature is on, its setup shrinks toward interrupting (the simplest way
# for it to reach the handler); chunks turn things off.
@st.composite
def _setup_draws(draw: st.DrawFn, config: MachineConfig, found: ConfigProbe) -> _SetupDraws:
    ring = draw(_ring(lambda place, slots: (place, slots)))
    cached = _setup_strategies(config, found)
    return _SetupDraws(
        tick_insns=draw(st.integers(300, 5_000)),
        first_insns=draw(st.one_of(st.none(), st.integers(50, 5_000))),
        uart=draw(_uart_setups()),
        uart_loop=draw(st.booleans()),
        rtc=gp.RtcSetup(
            irq=draw(st.booleans().map(_not)),
            alarm_ns=draw(st.one_of(st.just(0), st.integers(1_000, 200_000), st.none())),
            rearm_ns=draw(st.one_of(st.just(0), st.integers(20_000, 500_000))),
        ),
        nic=gp.NicSetup(
            place=ring[0],
            slots=ring[1],
            mask=draw(st.sampled_from(NIC_MASKS)),
            rx=draw(st.booleans().map(_not)),
        ),
        priorities=tuple(draw(st.integers(1, 7)) for _ in _irq_sources(config, found)),
        threshold=draw(st.integers(0, 2)),
        entropy_enable=draw(st.booleans()),
        final_waits=draw(st.integers(0, 4)),
        repeat=draw(st.integers(2, 32)),
        service_reads=tuple(
            draw(_service_reads(device)) for device in found.devices if device.irq is not None
        ),
        block_start=draw(cached.block_start),
        final_watch=draw(cached.final_watch),
        hold_rounds=draw(_uniform(0, HOLD_ROUNDS_MAX)),
        hold_points=draw(cached.points),
        trap_points=draw(cached.points),
    )


def _setup(
    raw: _SetupDraws, features: frozenset[str], config: MachineConfig, found: ConfigProbe
) -> gp.Setup:
    """The prologue's setup: the drawn values the features use."""
    specs = gp.builtin_specs(config)
    has = features.__contains__
    timer = has("timer") or has("tick") or (has("wfi") and gp.KIND_CLINT in specs)
    mie = (gp.MIE_MTIE if timer else 0) | (gp.MIE_MSIE if has("msi") else 0)
    uart_setup = raw.uart
    if has("uart.loopback") and raw.uart_loop:
        uart_setup = dataclasses.replace(uart_setup, mcr=uart_setup.mcr | uart.MCR_LOOP)
    plic_setup = None
    if has("plic"):
        sources = _irq_sources(config, found)
        plic_setup = gp.PlicSetup(
            priorities=tuple(
                sorted(
                    (irq, priority)
                    for (feature, irq), priority in zip(sources, raw.priorities, strict=True)
                    if has(feature)
                )
            ),
            threshold=raw.threshold,
        )
        if plic_setup.priorities:
            mie |= gp.MIE_MEIE
    with_irq = [device for device in found.devices if device.irq is not None]
    generic = tuple(
        gp.GenericService(device.irq, reads)
        for device, reads in zip(with_irq, raw.service_reads, strict=True)
        if device.irq is not None and has(gp.USER_FEATURE_PREFIX + device.name)
    )
    victim = _victim_sector(config)
    return gp.Setup(
        vectored=has("vectored"),
        mie=mie,
        tick_ticks=gp.ticks_for(config, raw.tick_insns) if has("tick") else 0,
        first_timer=(
            gp.ticks_for(config, raw.first_insns) if timer and raw.first_insns is not None else None
        ),
        uart=uart_setup if has("uart") else None,
        plic=plic_setup,
        rtc=raw.rtc if has("rtc") else None,
        nic=raw.nic if has("nic") else None,
        entropy_enable=has("entropy") and raw.entropy_enable,
        handler_entropy=has("entropy.handler"),
        victim_sector=victim if has("block.dma_code") else None,
        generic=generic,
        final_waits=raw.final_waits if has("wfi") else 0,
        repeat=raw.repeat if has("repeat") else 1,
        start=_start(raw, features),
        final_watch=raw.final_watch if has("watch") else None,
        hold_rounds=raw.hold_rounds if has("plic") else 0,
        hold_points=raw.hold_points if has("plic") else (),
        trap_points=raw.trap_points if has("watch") else (),
    )


def _start(raw: _SetupDraws, features: frozenset[str]) -> tuple[gp.Chunk, ...]:
    """What the prologue starts: the disk busy with requests while the body runs."""
    if "block" in features and raw.block_start:
        return (gk.BlockSubmit(raw.block_start, scribble=False),)
    return ()


def _not(value: bool) -> bool:  # noqa: FBT001 - a drawn boolean, shrinking toward True
    return not value


@st.composite
def _uart_setups(draw: st.DrawFn) -> gp.UartSetup:
    return gp.UartSetup(
        ier=draw(st.sampled_from(UART_IERS)),
        fcr=draw(st.sampled_from((0x00, 0x01, 0x07, 0x41, 0x81, 0xC1, 0xC7))),
        lcr=draw(st.sampled_from((0x03, 0x00, 0x07, 0x0B, 0x1F))),
        divisor=draw(st.one_of(st.none(), _divisors())),
        mcr=uart.MCR_OUT2 | draw(st.integers(0, 7)),
    )


def _service_reads(device: DeviceProbe) -> SearchStrategy[tuple[tuple[int, int], ...]]:
    width = max(device.widths)
    offsets = device.live or (0,)
    return st.lists(st.sampled_from(offsets), max_size=3).map(
        lambda chosen: tuple((device.base + offset - offset % width, width) for offset in chosen)
    )


def guest_programs(
    *, config: MachineConfig | None = None, max_chunks: int = DEFAULT_MAX_CHUNKS
) -> SearchStrategy[g.GuestProgram]:
    """Rendered guest programs (plan, source, features) for `config` (the full built-in
    machine when None)."""
    target = config if config is not None else MachineConfig(devices=FULL_DEVICES)
    return guest_plans(target, max_chunks=max_chunks).map(
        lambda plan: g.GuestProgram(
            plan,
            g.render(plan, target),
            tuple(sorted(plan.features)),
            g.estimated_length(plan, target),
        )
    )


# -- stimulus ---------------------------------------------------------------------------------


def ethernet_frames() -> SearchStrategy[bytes]:
    """Valid Ethernet frames: to the guest's address or broadcast, padded or not."""
    return st.builds(
        lambda dst, src, ethertype, payload, pad: (
            dst + src + ethertype.to_bytes(2, "big") + payload
        ).ljust(60 if pad else 0, b"\0"),
        st.sampled_from((GUEST_MAC, BROADCAST_MAC)),
        st.one_of(st.just(HOST_MAC), st.binary(min_size=6, max_size=6)),
        st.sampled_from(ETHERTYPES),
        st.binary(max_size=64),
        st.booleans(),
    )


def network_payloads() -> SearchStrategy[bytes]:
    """Frames, garbage, and frames longer than a ring slot (the NIC truncates them)."""
    oversized = st.builds(
        lambda byte, n: bytes([byte]) * n,
        st.integers(0, 255),
        st.integers(nic.RX_MAX + 1, nic.RX_MAX + 64),
    )
    return st.one_of(ethernet_frames(), st.binary(max_size=80), oversized)


def stimulus_channels(config: MachineConfig) -> list[tuple[str, SearchStrategy[bytes]]]:
    """(channel, payloads) for every host input `config` has: the UART's bytes, the NIC's
    frames and the channels its user devices listen on."""
    specs = gp.builtin_specs(config)
    out: list[tuple[str, SearchStrategy[bytes]]] = []
    if gp.KIND_UART in specs:
        out.append((specs[gp.KIND_UART].name, st.binary(min_size=1, max_size=24)))
    if gp.KIND_NIC in specs:
        out.append((specs[gp.KIND_NIC].name, network_payloads()))
    if gp.generic_specs(config):
        for channel in probe(config).channels:
            payload = st.binary(min_size=1, max_size=64)
            out.append(
                (channel.name, ethernet_frames() | payload if channel.kind == "net" else payload)
            )
    return out


def host_times(budget: int, *, horizon_ns: int = EARLY_HOST_NS) -> SearchStrategy[int]:
    """When stimulus arrives: mostly within `horizon_ns` (about when a busy program of the
    expected length ends on the slowest host), a third of the time within a quarter of it
    (while it runs on a typical host: input the guest meets mid-run), else anywhere a busy
    run of `budget` instructions reaches (a sleeping guest lets host time jump there)."""
    return st.one_of(
        st.integers(0, max(1, horizon_ns // 4)),
        st.integers(0, max(1, horizon_ns)),
        st.integers(0, max(1, budget) * HOST_NS_PER_INSN),
    )


def stimulus_schedules(
    *,
    config: MachineConfig | None = None,
    budget: int = DEFAULT_BUDGET,
    horizon_ns: int = EARLY_HOST_NS,
    max_events: int = MAX_STIMULUS_EVENTS,
) -> SearchStrategy[tuple[Stimulus, ...]]:
    """Host input events (sorted by arrival), shrinking toward none."""
    target = config if config is not None else MachineConfig(devices=FULL_DEVICES)
    channels = stimulus_channels(target)
    if not channels:
        return st.just(())
    times = host_times(budget, horizon_ns=horizon_ns)
    event = st.one_of(
        [st.builds(Stimulus, times, st.just(name), payloads) for name, payloads in channels]
    )
    return st.lists(event, max_size=max_events).map(lambda events: tuple(sorted(events)))


# -- schedules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where points go: within the budget, mostly before `horizon` (where the run ends,
    when known) and shortly after the `events` (icounts of its log's events)."""

    budget: int
    horizon: int = EARLY_ICOUNT
    events: tuple[int, ...] = ()


# Plain draw functions rather than strategies: the points depend on each scenario's run,
# and building (and validating) strategies per scenario costs more than drawing.
def _draw_icount(draw: st.DrawFn, where: Where) -> int:
    """An icount (POINT_PLACES says how often where): anywhere before the horizon, shortly
    after an event (where host input reached the guest: the handler, the drivers and the
    devices act right there), or anywhere up to the budget. Shrinks toward icount 0."""
    place = draw(_PLACES)
    if place == "anywhere":
        return draw(st.integers(0, where.budget))
    if where.events and place == "event":
        # Reaches spread over orders of magnitude: the next few instructions (the handler
        # entered, a claim taken) as often as the next few hundred.
        reach = 1 << draw(_REACH_BITS)
        event = draw(st.sampled_from(where.events))
        return min(where.budget, event + draw(st.integers(0, reach)))
    return draw(st.integers(0, min(where.budget, max(1, where.horizon))))


def _draw_count(draw: st.DrawFn, max_size: int) -> int:
    """0 to `max_size`, uniformly (Hypothesis's lists, and integers(), favour none: a
    scenario without stops never checks stop/cont)."""
    return draw(st.sampled_from(range(max_size + 1)))


def _draw_stops(draw: st.DrawFn, where: Where) -> tuple[Stop, ...]:
    found: dict[int, Stop] = {}
    for _ in range(_draw_count(draw, MAX_POINTS)):
        icount = _draw_icount(draw, where)
        found[icount] = Stop(icount, draw(_STOP_NS))
    return tuple(found[icount] for icount in sorted(found))


def _draw_points(draw: st.DrawFn, where: Where, max_size: int = MAX_POINTS) -> tuple[int, ...]:
    return tuple(sorted({_draw_icount(draw, where) for _ in range(_draw_count(draw, max_size))}))


def _draw_seeks(draw: st.DrawFn, where: Where) -> tuple[int, ...]:
    """Seeks in the order they are made (backward and forward)."""
    return tuple(_draw_icount(draw, where) for _ in range(_draw_count(draw, MAX_POINTS)))


@st.composite
def icounts(
    draw: st.DrawFn, budget: int, *, horizon: int = EARLY_ICOUNT, events: Sequence[int] = ()
) -> int:
    """One point (see `_draw_icount`)."""
    return _draw_icount(draw, Where(budget, horizon, tuple(events)))


@st.composite
def stops(
    draw: st.DrawFn, budget: int, *, horizon: int = EARLY_ICOUNT, events: Sequence[int] = ()
) -> tuple[Stop, ...]:
    """Stops (each a point and how long host time passes), sorted, one per icount."""
    return _draw_stops(draw, Where(budget, horizon, tuple(events)))


@st.composite
def point_sets(
    draw: st.DrawFn,
    budget: int,
    *,
    horizon: int = EARLY_ICOUNT,
    events: Sequence[int] = (),
    max_size: int = MAX_POINTS,
) -> tuple[int, ...]:
    """Distinct points, sorted (snapshots, samples)."""
    return _draw_points(draw, Where(budget, horizon, tuple(events)), max_size)


@st.composite
def seek_lists(
    draw: st.DrawFn, budget: int, *, horizon: int = EARLY_ICOUNT, events: Sequence[int] = ()
) -> tuple[int, ...]:
    """Seeks in the order they are made (backward and forward)."""
    return _draw_seeks(draw, Where(budget, horizon, tuple(events)))


@st.composite
def _spread(draw: st.DrawFn, low_bits: int, high_bits: int) -> int:
    """A value in [2**low_bits, 2**high_bits), as likely in any order of magnitude (shrinking
    toward the low end). The magnitude is drawn first: integers() over a wide range
    favours small values."""
    bits = draw(st.sampled_from(range(low_bits, high_bits)))
    return (1 << bits) + draw(st.integers(0, (1 << bits) - 1))


_PLACES = st.sampled_from(POINT_PLACES)
_REACH_BITS = st.sampled_from(range(EVENT_REACH_BITS[0], EVENT_REACH_BITS[1] + 1))
_STOP_NS = st.one_of(st.none(), _spread(*STOP_NS_BITS))


# -- scenarios ----------------------------------------------------------------------------------


def _horizon(estimate: int) -> int:
    """Where a program's run is expected to end, in instructions: interrupts, waits and
    the handler make it longer than the static estimate. Rounded up to a power of two, so
    few stimulus strategies are ever built (building costs more than drawing)."""
    need = 2 * estimate + HANDLER_ALLOWANCE
    return 1 << (need - 1).bit_length()


@dataclass(frozen=True)
class DryRun:
    """What a run of the scenario showed: where it ended, and the icounts (distinct,
    sorted) of its replay log's events: interrupts, host input, clock reads, checkpoints."""

    length: int
    events: tuple[int, ...]


def dry_run(scenario: Scenario) -> DryRun | None:
    """The scenario's recording, made once ahead of the check to see where things happen
    (the check's own recording must be the same run, or it reports that). A few
    milliseconds for most programs, a small part of a check; None if the machine cannot
    run it (the check will say why)."""
    try:
        trace = BuiltinTarget().run(scenario.trace_run(ReplayMode.RECORD))
        icount, events = 0, set()
        for event in read_log(trace.log or b"").events:
            if event.kind is EventKind.INSTRUCTION:
                icount += int(event.args[0])  # type: ignore[call-overload]
            else:
                events.add(icount)
    except Exception:  # whatever breaks here, the check meets again and reports
        return None
    if trace.final is None:
        return None
    return DryRun(trace.final.icount, tuple(sorted(events)))


@functools.lru_cache(maxsize=64)
def _stimulus(config: MachineConfig, budget: int, horizon: int) -> SearchStrategy:  # type: ignore[type-arg]
    return stimulus_schedules(config=config, budget=budget, horizon_ns=horizon * HOST_NS_PER_INSN)


@st.composite
def scenarios(
    draw: st.DrawFn,
    *,
    config: MachineConfig | None = None,
    devices: Sequence[DeviceSpec] | None = None,
    planted_bugs: Sequence[str] = (),
    user_devices: Sequence[DeviceSpec] = (),
    max_chunks: int = DEFAULT_MAX_CHUNKS,
    budget: int = DEFAULT_BUDGET,
) -> Scenario:
    """Whole scenarios. `config` fixes the machine (else one is drawn: the full built-in
    machine, or `devices`, with RAM size and icount shift drawn); `user_devices` are
    added to it and `planted_bugs` switched on.

    Stop, snapshot, seek and sample points are drawn where the run is: the program, its
    input and its host are drawn first and recorded once (`dry_run`), and points go
    before its end, many just after its log's events. Points past the end of a run that
    finished are never reached, a static estimate is off by several times for a program
    the handler or waits lengthen, and the states worth stopping, saving or seeking in
    (a line high, a claim held, a completion just in) follow the host's events."""
    if config is None:
        machine = draw(
            machine_configs(devices=devices, planted_bugs=planted_bugs, user_devices=user_devices)
        )
    else:
        machine = _apply(
            config, devices=devices, planted_bugs=planted_bugs, user_devices=user_devices
        )
    program = draw(guest_programs(config=machine, max_chunks=max_chunks))
    stimulus = draw(_stimulus(machine, budget, _horizon(program.estimate)))
    seed_a = draw(st.integers(0, (1 << 64) - 1))
    seed_b = draw(st.integers(0, (1 << 64) - 1))
    if seed_b == seed_a:
        seed_b = (seed_a + 1) % (1 << 64)  # a replay meets another host
    bare = Scenario(
        config=machine,
        program=program.source,
        stimulus=stimulus,
        host_seeds=(seed_a, seed_b),
        host_profile=draw(st.sampled_from(HOST_PROFILES)),
        budget=budget,
        features=program.features,
    )
    run = dry_run(bare)
    where = (
        Where(budget, _horizon(program.estimate))
        if run is None
        else Where(budget, run.length, run.events)
    )
    return dataclasses.replace(
        bare,
        stops=_draw_stops(draw, where),
        snapshots=_draw_points(draw, where),
        seeks=_draw_seeks(draw, where),
        section_order_seed=draw(st.integers(0, (1 << 32) - 1)),
        samples=_draw_points(draw, where, MAX_POINTS + 1),
    )
