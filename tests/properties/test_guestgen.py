"""Generated guest programs: they assemble, run on the built-in machine to the finisher or
the budget without a Python exception, vary with the swarm, take interrupts from many
sources, exercise user devices generically, and are quick to generate."""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, Phase, event, find, given, settings

from fuzzer import guestchunks as gk
from fuzzer import guestgen as g
from fuzzer import guestplan as gp
from fuzzer.probe import probe
from fuzzer.scenario import Scenario
from fuzzer.strategies import (
    FULL_DEVICES,
    available_features,
    dry_run,
    generic_accesses,
    guest_plans,
    guest_programs,
    scenarios,
    stimulus_schedules,
    watch_points,
)
from vm import Machine, MachineConfig, ReplayMode, StopReason
from vm.asm import assemble_program
from vm.config import DEFAULT_DEVICES, DeviceSpec
from vm.devices import Device, DeviceHost, block, entropy, nic
from vm.hostmodel import HostProfile
from vm.loader import load_program
from vm.trace import BuiltinTarget
from vm.vmstate import U32, Bool, VMStateDescription

FULL = MachineConfig(ram_size=1 << 20, devices=FULL_DEVICES)
ENDINGS = {StopReason.FINISHER_PASS, StopReason.BUDGET}
FAST_DISK = HostProfile(block_latency_ns_min=1_000, block_latency_ns_max=20_000)
QUICK = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Scratch(Device):
    """A user device: a register, a byte counter fed by its own char channel, and an
    interrupt raised by a KICK write or by input (a read of STATUS clears it)."""

    kind = "scratch"
    size = 0x40
    access_sizes = frozenset({2, 4})
    VALUE, RECEIVED, MAGIC, STATUS, KICK = 0x0, 0x4, 0x8, 0xC, 0x10
    VMSTATE = VMStateDescription(
        "scratch",
        version=1,
        minimum_version=1,
        fields=[U32("value"), U32("received"), Bool("pending")],
        post_load=lambda dev: dev.after_load(),
    )
    HOST_SIDE: ClassVar[frozenset[str]] = frozenset({"backend", "irq"})

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.irq = host.irq_line(spec.irq or 1)
        self.backend = host.char_backend(spec.name)
        self.backend.connect(can_receive=lambda: 4, receive=self._receive)
        self.reset()

    def reset(self) -> None:
        self.value, self.received, self.pending = 0, 0, False
        self.irq.lower()

    def after_load(self) -> None:
        self.irq.level = self.pending

    def read(self, offset: int, size: int) -> int:
        if offset == self.STATUS:
            was, self.pending = self.pending, False
            self.irq.lower()
            return int(was)
        return {self.VALUE: self.value, self.RECEIVED: self.received, self.MAGIC: 0x5C}.get(
            offset, 0
        )

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == self.VALUE:
            self.value = value
        elif offset == self.KICK:
            self.pending = True
            self.irq.raise_()

    def _receive(self, data: bytes) -> None:
        self.received += len(data)
        self.pending = True
        self.irq.raise_()


SCRATCH = DeviceSpec(f"{__name__}:Scratch", "scratch0", 0x1000_4000, irq=5)
WITH_USER = MachineConfig(ram_size=1 << 20, devices=(*FULL_DEVICES, SCRATCH))


def run_machine(scenario: Scenario) -> tuple[Machine, object]:
    """Run in mode NONE on a machine of our own (to read the handler's records)."""
    program = scenario.assembled()
    machine = Machine(
        scenario.config,
        host_seed=scenario.host_seeds[0],
        host_profile=scenario.host_profile,
        stimulus=scenario.stimulus,
    )
    load_program(machine, program.image)
    machine.run(scenario.budget)
    return machine, program


def interrupt_kinds(machine: Machine, program) -> set[str]:  # type: ignore[no-untyped-def]
    records = g.read_records(machine.bus.read_bytes, program.symbols)
    kinds = {name for name in ("cnt_msi", "cnt_mti", "cnt_poll") if records[name]}
    sources = g.source_counts(machine.bus.read_bytes, program.symbols)
    return kinds | {f"source{source}" for source in sources}


# -- assembling and running -------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(guest_programs(config=FULL))
def test_every_generated_program_assembles(program):
    assembled = assemble_program(program.source)
    assert assembled.symbols["_start"] == 0x8000_0000
    assert len(assembled.image) < FULL.ram_size
    assert program.estimate > 0
    for feature in program.features:
        event(f"feature {feature}")


@QUICK
@given(scenarios(max_chunks=10, budget=30_000))
def test_generated_scenarios_run_to_the_finisher_or_the_budget(scenario):
    trace = BuiltinTarget().run(scenario.trace_run(ReplayMode.NONE))
    assert trace.error is None
    assert trace.stop in ENDINGS, (trace.stop, scenario.features)
    assert trace.final is not None and trace.final.icount <= scenario.budget
    event(f"stop {trace.stop.value}")


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(budget=200_000))
def test_many_generated_scenarios_run_to_the_finisher_or_the_budget(scenario):
    machine, program = run_machine(scenario)
    assert machine.cpu.icount <= scenario.budget
    trace = BuiltinTarget().run(scenario.trace_run(ReplayMode.NONE))
    assert trace.stop in ENDINGS, (trace.stop, scenario.features)
    for kind in interrupt_kinds(machine, program):
        event(f"interrupt {kind}")


@QUICK
@given(scenarios(config=WITH_USER, max_chunks=10, budget=30_000))
def test_scenarios_with_a_user_device_run(scenario):
    trace = BuiltinTarget().run(scenario.trace_run(ReplayMode.NONE))
    assert trace.error is None and trace.stop in ENDINGS


def test_a_plan_with_every_feature_takes_every_kind_of_trap():
    """A hand-made plan using every feature: each interrupt source and exception cause
    reaches the handler, and the run ends at the finisher."""
    plan = gp.GuestPlan(frozenset(gp.FEATURES), EVERYTHING, EVERY_CHUNK)
    program = assemble_program(g.render(plan, FULL))
    seen_sources = collections.Counter[int]()
    for seed in range(3):
        machine = Machine(FULL, host_seed=seed, host_profile=FAST_DISK)
        load_program(machine, program.image)
        assert machine.run(1_000_000).reason is StopReason.FINISHER_PASS
        records = g.read_records(machine.bus.read_bytes, program.symbols)
        assert records["cnt_msi"] and records["cnt_mti"] and records["cnt_poll"]
        assert records["cnt_uart_rx"] and records["cnt_nic_tx"] and records["cnt_rtc"]
        assert records["hold_acc"]  # the handler held what it claimed, watching
        assert records["trap_acc"]  # and watched at every trap's entry
        seen_sources.update(g.source_counts(machine.bus.read_bytes, program.symbols))
        raw = machine.bus.read_bytes(program.symbols["cnt_exc"], 64)
        causes = {c for c in range(16) if int.from_bytes(raw[4 * c : 4 * c + 4], "little")}
        assert causes == {0, 1, 2, 3, 5, 7, 11}
    spec = {s.kind: s for s in FULL.devices}
    assert {spec["ns16550a"].irq, spec["goldfish_rtc"].irq, spec["nic"].irq} <= set(seen_sources)
    assert spec["block"].irq in seen_sources  # the disk completed while the guest waited


def test_a_held_claim_leaves_the_line_high_and_the_source_not_pending():
    """The states a plain handler passes through in a few instructions last while a
    source is held: the UART's THR-empty line high, its PLIC pending bit clear (claimed),
    for about as long as the hold's rounds, in the handler and in a body ClaimHold."""
    uart_irq = {s.kind: s for s in FULL.devices}["ns16550a"].irq
    assert uart_irq is not None
    setup = gp.Setup(
        mie=gp.MIE_MEIE,
        uart=gp.UartSetup(ier=0x02, fcr=0, lcr=3, divisor=None, mcr=8),
        plic=gp.PlicSetup(priorities=((uart_irq, 1),), threshold=0),
        hold_rounds=50,
    )
    hold = gk.ClaimHold((gk.UartTx(b"x", poll=False),), 5, 80, ())
    plan = gp.GuestPlan(frozenset({"uart", "plic", "watch"}), setup, (hold,))
    program = assemble_program(g.render(plan, FULL))
    machine = Machine(FULL)
    load_program(machine, program.image)
    uart, plic = machine.devices["uart0"], machine.devices["plic"]
    held = 0
    while machine.run(1).reason is StopReason.BUDGET:
        held += uart.irq.level and not plic.pending[uart_irq // 32] >> uart_irq % 32 & 1
    assert machine.cpu.icount < 2_000
    assert held >= 2 * (50 + 80)  # two rounds' worth at least: an empty round is 2 insns
    records = g.read_records(machine.bus.read_bytes, program.symbols)
    assert records["cnt_poll"] == 1 and records["hold_acc"]
    assert g.source_counts(machine.bus.read_bytes, program.symbols) == {uart_irq: 2}


def test_a_masked_section_holds_only_chunks_that_stay_masked():
    preludes = 0

    def record(plan: gp.GuestPlan) -> None:
        nonlocal preludes
        ctx = gp.Ctx(plan, FULL)
        for chunk in plan.chunks:
            if isinstance(chunk, gk.ClaimHold):
                preludes += len(chunk.prelude)
                for inner in chunk.prelude:
                    assert not gk.unmasks(inner, ctx), inner
                    feature = gk.chunk_feature(inner)
                    assert feature is None or feature in plan.features

    collect(guest_plans(FULL), 150, record)
    assert preludes


def test_watch_points_cover_the_hart_the_devices_and_user_devices():
    points = watch_points(WITH_USER, probe(WITH_USER))
    assert gp.WatchPoint("", csr="mip") in points
    assert gp.WatchPoint("PLIC_PENDING") in points and gp.WatchPoint("BLK", block.STATUS) in points
    user = {int(p.base, 16) for p in points if p.base.startswith("0x")}
    assert user == {SCRATCH.base + offset for offset in probe(WITH_USER).devices[0].live}
    bare = watch_points(MachineConfig(devices=DEFAULT_DEVICES), probe(WITH_USER))
    assert not any(p.base in ("BLK", "NIC", "ENTROPY") for p in bare)


def test_block_requests_are_mostly_valid_and_the_prologue_s_all_are():
    """A request the disk rejects never completes: at most one thing is wrong with any,
    and the disk the prologue starts gets only requests it takes."""

    def valid(request: gk.BlockRequest) -> bool:
        return (
            request.command in (block.CMD_READ, block.CMD_WRITE)
            and request.count > 0
            and request.where != "bad"
            and request.sector + request.count <= block.DEFAULT_SECTORS
        )

    body: list[bool] = []
    started = 0

    def record(plan: gp.GuestPlan) -> None:
        nonlocal started
        for chunk in plan.setup.start:
            assert isinstance(chunk, gk.BlockSubmit)
            assert all(valid(request) for request in chunk.requests), chunk
            started += 1
        for chunk in plan.chunks:
            if isinstance(chunk, gk.BlockSubmit):
                body.extend(valid(request) for request in chunk.requests)

    collect(guest_plans(FULL), 150, record)
    assert started and body
    assert sum(body) / len(body) > 0.3, (sum(body), len(body))


def test_points_are_drawn_where_the_run_is():
    """Stops, snapshots, seeks and samples go before the end of the run (the dry run's),
    many of them close after its log's events; only a few anywhere in the budget."""
    inside = total = near = 0

    def record(scenario: Scenario) -> None:
        nonlocal inside, total, near
        run = dry_run(scenario)
        assert run is not None
        points = [
            *scenario.samples,
            *scenario.snapshots,
            *scenario.seeks,
            *(stop.icount for stop in scenario.stops),
        ]
        total += len(points)
        inside += sum(p <= run.length for p in points)
        near += sum(any(0 <= p - e <= 64 for e in run.events) for p in points)

    collect(scenarios(max_chunks=8, budget=30_000), 40, record)
    assert total and inside / total > 0.75, (inside, total)
    assert near / total > 0.15, (near, total)


# -- swarm, sources, user devices ---------------------------------------------------------------


def collect(strategy, examples: int, record) -> None:  # type: ignore[no-untyped-def]
    """Run `record` on `examples` derandomized draws of `strategy`."""

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(value):  # type: ignore[no-untyped-def]
        record(value)

    draw()


def test_the_swarm_varies_features_and_chunks():
    feature_sets: set[tuple[str, ...]] = set()
    chunk_kinds: set[str] = set()

    def record(plan: gp.GuestPlan) -> None:
        feature_sets.add(tuple(sorted(plan.features)))
        chunk_kinds.update(type(chunk).__name__ for chunk in plan.chunks)
        for chunk in plan.chunks:
            feature = gk.chunk_feature(chunk)
            assert feature is None or feature in plan.features, (chunk, plan.features)

    collect(guest_plans(FULL), 80, record)
    assert len(feature_sets) >= 15
    for feature in available_features(FULL):  # each top-level one both on and off somewhere
        if "." in feature:
            continue  # a sub-feature needs its parent too: rarer
        assert any(feature in s for s in feature_sets), feature
        assert any(feature not in s for s in feature_sets), feature
    assert len(chunk_kinds) >= 20


def test_features_stay_within_what_the_configuration_has():
    bare = MachineConfig(devices=DEFAULT_DEVICES)
    allowed = set(available_features(bare))
    assert "block" not in allowed and "nic" not in allowed and "uart" in allowed

    def record(plan: gp.GuestPlan) -> None:
        assert plan.features <= allowed

    collect(guest_plans(bare), 30, record)


def test_the_handler_records_interrupts_from_several_sources_across_examples():
    kinds: collections.Counter[str] = collections.Counter()

    def record(scenario: Scenario) -> None:
        machine, program = run_machine(scenario)
        kinds.update(interrupt_kinds(machine, program))

    # Most of a run's examples are Hypothesis's mutations of a few fresh ones, and which
    # ones it makes past the first few dozen depends on the process it runs in (seen:
    # importing one more module before it changes them), so this asserts breadth, not a
    # particular kind; every kind is asserted by the all-features test above.
    collect(scenarios(config=FULL, max_chunks=10, budget=30_000), 200, record)
    spec = {s.kind: s for s in FULL.devices}
    irqs = ("ns16550a", "goldfish_rtc", "block", "nic")
    plic_sources = {f"source{spec[kind].irq}" for kind in irqs}
    assert "cnt_mti" in kinds and kinds.keys() & {"cnt_msi", "cnt_poll"}, kinds
    assert len(plic_sources & set(kinds)) >= 2, kinds
    assert len(kinds) >= 4, kinds


def test_user_devices_are_probed_and_exercised():
    found = probe(WITH_USER)
    (device,) = found.devices
    assert device.name == "scratch0" and device.widths == (2, 4)
    assert {Scratch.VALUE, Scratch.MAGIC} <= set(device.live)
    assert [(c.name, c.kind) for c in found.channels] == [("scratch0", "char")]
    assert probe(WITH_USER) is found  # cached per configuration

    accesses: list[gk.GenericOp] = []
    channels: set[str] = set()

    def record(plan: gp.GuestPlan) -> None:
        for chunk in plan.chunks:
            if isinstance(chunk, gk.GenericAccess):
                accesses.extend(chunk.ops)

    collect(guest_plans(WITH_USER), 60, record)
    collect(generic_accesses(device), 40, accesses.append)
    collect(
        stimulus_schedules(config=WITH_USER), 30, lambda s: channels.update(e.channel for e in s)
    )
    assert accesses
    for op in accesses:
        assert op.width in (2, 4) and op.address % op.width == 0
        assert SCRATCH.base <= op.address < SCRATCH.base + Scratch.size
    assert {SCRATCH.base + offset for offset in device.live} & {op.address for op in accesses}
    assert "scratch0" in channels


def test_a_user_device_interrupt_is_serviced_by_the_handler():
    setup = dataclasses.replace(
        EVERYTHING,
        plic=gp.PlicSetup(priorities=((SCRATCH.irq, 3),), threshold=0),
        generic=(gp.GenericService(SCRATCH.irq, ((SCRATCH.base + Scratch.STATUS, 4),)),),
    )
    kick = gk.GenericOp(SCRATCH.base + Scratch.KICK, 4, store=True, value=1)
    plan = gp.GuestPlan(
        frozenset({"plic", gp.USER_FEATURE_PREFIX + "scratch0"}),
        setup,
        (gk.GenericAccess("scratch0", (kick,)), gk.Alu(("nop",) * 4)),
    )
    program = assemble_program(g.render(plan, WITH_USER))
    machine = Machine(WITH_USER)
    load_program(machine, program.image)
    assert machine.run(100_000).reason is StopReason.FINISHER_PASS
    assert g.source_counts(machine.bus.read_bytes, program.symbols) == {SCRATCH.irq: 1}
    assert g.read_records(machine.bus.read_bytes, program.symbols)["user_acc"] == 1


def test_generation_is_fast():
    start = time.perf_counter()
    count = 0

    def record(scenario: Scenario) -> None:
        nonlocal count
        count += 1
        scenario.image()

    collect(scenarios(), 40, record)
    elapsed = time.perf_counter() - start
    assert count == 40
    assert elapsed / count < 0.25, f"{elapsed / count:.3f} s per scenario"


QUIET = settings(database=None, suppress_health_check=list(HealthCheck))


def test_the_simplest_plan_has_no_features_and_no_chunks():
    """Hypothesis's first example is its simplest (every choice at its minimum): the plan
    everything shrinks toward."""
    first: list[g.GuestPlan] = []

    @settings(QUIET, max_examples=1, phases=[Phase.generate], derandomize=True)
    @given(guest_plans(FULL))
    def draw(plan: g.GuestPlan) -> None:
        first.append(plan)

    draw()
    assert first[0].chunks == () and first[0].features == frozenset()


@pytest.mark.slow
def test_a_waiting_plan_shrinks_to_a_timer_wait_and_nothing_else():
    """Switching a feature off drops its chunks and changes nothing else (every draw has
    one shape), so Hypothesis gets all the way down."""

    def waits(plan: gp.GuestPlan) -> bool:
        return any(isinstance(chunk, gk.Wait) for chunk in plan.chunks)

    waiting = find(guest_plans(FULL), waits, settings=QUIET)
    assert waiting.features == frozenset({"wfi"})
    assert gk.Wait("timer", 50) in waiting.chunks
    assert len(waiting.chunks) <= 2  # the shrinker's budget may leave one simple chunk


# -- a plan that uses everything -------------------------------------------------------------

EVERYTHING = gp.Setup(
    vectored=True,
    mie=gp.MIE_MSIE | gp.MIE_MTIE | gp.MIE_MEIE,
    tick_ticks=10,
    first_timer=5,
    uart=gp.UartSetup(ier=0x7, fcr=0xC1, lcr=3, divisor=1, mcr=8),
    plic=gp.PlicSetup(priorities=((2, 1), (3, 2), (10, 3), (11, 4)), threshold=0),
    rtc=gp.RtcSetup(irq=True, alarm_ns=5_000, rearm_ns=20_000),
    nic=gp.NicSetup(place="ring_area", slots=2, mask=7, rx=True),
    entropy_enable=True,
    handler_entropy=True,
    victim_sector=block.DEFAULT_SECTORS - 1,
    final_waits=4,
    start=(gk.BlockSubmit((gk.BlockRequest(block.CMD_READ, 1, 1, "dma_area", 0),), False),),
    final_watch=gk.Watch((gp.WatchPoint("PLIC_PENDING"),), 500, 10, masked=True),
    hold_rounds=20,
    hold_points=(gp.WatchPoint("", csr="mip"), gp.WatchPoint("BLK", block.STATUS)),
    trap_points=(gp.WatchPoint("PLIC_PENDING"), gp.WatchPoint("UART", 5, 1)),
)
EVERY_CHUNK: tuple[gp.Chunk, ...] = (
    gk.Alu(("add t0, t1, t2", "mul a0, a1, a2", "divu a3, a0, zero")),
    gk.Memory(("lw t0, 3(s0)", "sw t1, -2048(s0)", "sh t2, 2047(s0)")),
    gk.Loop(5, ("addi t0, t0, 1", "lbu t1, 1(s0)")),
    gk.CsrOps(("csrr t0, minstret", "csrw mcycle, t0")),
    *[gk.Trap(kind) for kind in gk.TRAPS],
    gk.TimerArm(300),
    gk.SoftIrq(),
    gk.MtimeOps(5),
    gk.Wait("timer", 1_000),
    gk.UartTx(b"hi", poll=True),
    gk.UartRead(tuple(range(8))),
    gk.UartWrite(2, 0x47),
    gk.UartDivisor(3, 3),
    gk.UartLoopback(b"x" * 20, keep=False),
    gk.UartDrain(5),
    gk.PlicMask("threshold", 0, 7, ("nop",)),
    gk.PlicMask("priority", 10, 0, ("nop",)),
    gk.PlicMask("enable", 3, 0, ("nop",)),
    gk.PlicPoll(),
    gk.PlicRead((0, 1, 2, 3, 4, 5, 6)),
    gk.ClaimHold((gk.UartTx(b"h", poll=False),), 10, 30, (gp.WatchPoint("PLIC_PENDING"),)),
    gk.Watch((gp.WatchPoint("UART", 5, 1), gp.WatchPoint("CLINT_MTIME")), 0, 20, masked=False),
    gk.BlockSubmit(
        (
            gk.BlockRequest(block.CMD_READ, 3, 1, "data_page", 10),
            gk.BlockRequest(block.CMD_WRITE, 4, 2, "dma_area", 0),
            gk.BlockRequest(block.CMD_READ, 5, 1, "bad", 0),
        ),
        scribble=True,
    ),
    gk.BlockRead(gk.BLOCK_READABLE),
    gk.Wait("host", 100),
    gk.VictimCall(),
    gk.VictimDma(),
    gk.Wait("host", 100),
    gk.VictimCall(),
    gk.VictimPatch(2, twin=False),
    gk.VictimCall(),
    gk.BlockAck(),
    gk.NicTx("frame", 60),
    gk.NicTx("data", 100),
    gk.NicTx("bad_length", 0),
    gk.NicRing("dma_area", 3),
    gk.NicWrite(nic.CTRL, 1),
    gk.NicRead(gk.NIC_READABLE),
    gk.RtcRead(),
    gk.RtcAlarm(0),
    gk.RtcAlarm(3_000),
    gk.Wait("host", 100),
    gk.EntropyRead(3),
    gk.EntropyWrite(entropy.CTRL, 1),
    gk.Wait("timer", 20_000),
    gk.Watch((gp.WatchPoint("NIC", nic.INT_STATUS),), 2_000, 5, masked=True),
)
