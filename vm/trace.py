"""The trace API (pinned): run a target once, get digests at sample points, the log, the
stop reason and any replay error. The fuzzer's properties compare traces and nothing else,
so another target (a real QEMU) can stand behind the same `Target` protocol.

    spec = TargetRun(config=cfg, program=image, mode=ReplayMode.RECORD, host_seed=1,
                     budget=200_000, samples=(1_000, 50_000))
    trace = BUILTIN.run(spec)
    again = BUILTIN.run(replace(spec, mode=ReplayMode.REPLAY, log=trace.log, host_seed=2))
    assert again.samples == trace.samples and again.error is None

A sample at icount k is taken at the instruction boundary after k retired instructions,
once all main-loop work due at k has run and any interrupt due at k has been entered: just
before instruction k+1 executes. Stops, snapshots and seeks land on that same point. At one
icount the order is: sample, snapshot, stop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from vm.activity import Activity, callback_owner
from vm.backends import Stimulus
from vm.clock import ClockKind
from vm.config import MachineConfig
from vm.digest import ComponentState, component_differences, component_state, sample_digests
from vm.hostmodel import HostProfile
from vm.loader import load_program
from vm.machine import Machine
from vm.replay import ReplayError, ReplayMode
from vm.session import SNAPSHOT_RETRIES, Session
from vm.snapshot import loadvm
from vm.stop import StopReason

RELOAD_DIFF_COMPONENTS = 4  # components whose fields a differing reload lists


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the VM at `icount`; host time passes (`host_ns`, or as long as the host model
    says), then it continues."""

    icount: int
    host_ns: int | None = None


@dataclass(frozen=True)
class TargetRun:
    """Everything one run of a target needs (plain data)."""

    config: MachineConfig
    program: bytes  # an ELF32 or flat image (vm.loader); unused with `start_snapshot`
    mode: ReplayMode = ReplayMode.NONE
    host_seed: int = 0
    host_profile: HostProfile | None = None  # the host's latencies and slicing (default)
    stimulus: tuple[Stimulus, ...] = ()
    budget: int = 1_000_000  # instructions from the start (icount 0), not from a snapshot
    samples: tuple[int, ...] = ()
    stops: tuple[Stop, ...] = ()
    snapshots: tuple[int, ...] = ()  # savevm at these icounts (retried later if refused)
    log: bytes | None = None  # the log to replay (mode REPLAY)
    start_snapshot: bytes | None = None  # start from this snapshot instead of booting
    seeks: tuple[int, ...] = ()  # replay: after the run, seek to each in turn and sample
    snapshot_every: int | None = None  # periodic snapshots (what seeks load)
    section_order_seed: int | None = None  # section order when reloading snapshots
    # Load the start snapshot and the seeks' snapshots with the device sections in reverse
    # order (an experiment: only a post_load reaching into another device can tell).
    reverse_sections: bool = False
    # Watching without changing the run (Machine.observe): digests right after the
    # instruction that reaches each icount, before any other work there; at `dump_at` (one
    # of them) also the state of `dump_components`; and the activity log.
    observe: tuple[int, ...] = ()
    dump_at: int | None = None
    dump_components: tuple[str, ...] = ()
    trace_activity: bool = False
    single_step: bool = False  # interpret each instruction alone (the reference engine)
    audit_icount: bool = False  # check that devices see exact icounts (Machine.audit_io_icount)
    coverage: bool = False  # count what the run reached (Trace.coverage)


@dataclass(frozen=True, slots=True)
class Sample:
    icount: int
    digest: bytes
    components: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class TakenSnapshot:
    """A snapshot point: where it was asked for and taken, the snapshot, the state of the
    machine there and of fresh machines that loaded it with their device sections in a
    shuffled order and in the reverse of that order."""

    requested: int
    icount: int
    data: bytes
    state: Sample
    reloaded: Sample
    reloaded_reversed: Sample
    # Owners of the host-side timers (REALTIME, EXTERNAL) armed when it was taken: a
    # snapshot carries none of them, by the rules none may change guest state.
    host_timer_owners: tuple[str, ...] = ()
    # Only when a reload differs: the fields that do, rendered, each prefixed by which
    # load ("forward"/"reversed") against the machine it was taken from.
    reload_differences: tuple[str, ...] = ()

    @property
    def digest(self) -> bytes:
        return self.state.digest

    @property
    def reloaded_digest(self) -> bytes:
        return self.reloaded.digest


@dataclass(frozen=True)
class Trace:
    samples: tuple[Sample, ...]
    final: Sample | None  # None if the run failed before its end
    stop: StopReason | None  # why the run ended (None: a replay error)
    log: bytes | None  # record mode: the log written
    snapshots: tuple[TakenSnapshot, ...] = ()
    seeks: tuple[Sample, ...] = ()
    error: ReplayError | None = None
    # Replay: the run ended where the log's END is (the whole log was consumed).
    replay_complete: bool | None = None
    observations: tuple[Sample, ...] = ()
    dump: Mapping[str, ComponentState] | None = None
    activity: tuple[Activity, ...] = ()
    icount_violations: tuple[tuple[int, int], ...] = ()  # (exact, seen by a device)
    coverage: Mapping[str, int] | None = None  # raw counters (vm.trace.CoverageCounter)
    console: bytes = b""
    finisher_code: int | None = None

    def sample_at(self, icount: int) -> Sample | None:
        return next((s for s in self.samples if s.icount == icount), None)


class Target(Protocol):
    name: str

    def run(self, spec: TargetRun) -> Trace: ...


def take_sample(machine: Machine) -> Sample:
    state, components = sample_digests(machine)
    return Sample(machine.cpu.icount, state, components)


# Distinct small read values kept per register (status registers say most through them).
COVERAGE_VALUES_PER_REGISTER = 16


def _host_timer_owners(machine: Machine) -> tuple[str, ...]:
    armed = [
        t
        for clock in (ClockKind.REALTIME, ClockKind.VIRTUAL)
        for t in machine.timer_lists[clock].timers
        if t.pending and (clock is ClockKind.REALTIME or t.external)
    ]
    return tuple(sorted({callback_owner(t.callback) for t in armed}))


class CoverageCounter:
    """Raw counts of what a run reached, named for vm-level facts only (the fuzzer turns
    them into feature names): `mmio/DEVICE/r|w/OFFSET`, `value/DEVICE/OFFSET/VALUE` (reads
    of values below 0x100, a few distinct ones per register), `irq/CAUSE` (interrupts
    taken), `code-write` (a write to a page holding translated code: self-modifying code
    or DMA into code), `stop/halted|running`, `snapshot/timer-armed|no-timer`."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.counts: Counter[str] = Counter()
        self._values: dict[tuple[str, int], set[int]] = {}
        machine.bus.mmio_observer = self._mmio
        code_write = machine.bus.on_code_write

        def counted_code_write(page: int) -> None:
            self.counts["code-write"] += 1
            code_write(page)

        machine.bus.on_code_write = counted_code_write
        take = machine._take_interrupt

        def counted_interrupt() -> bool:
            taken = take()
            if taken:
                self.counts[f"irq/{machine.cpu.mcause & 0xFF}"] += 1
            return taken

        machine._take_interrupt = counted_interrupt  # type: ignore[method-assign]

    def _mmio(self, access: str, device: str, offset: int, size: int, value: int) -> None:
        del size
        self.counts[f"mmio/{device}/{access[0]}/{offset:#x}"] += 1
        if access == "read" and value < 0x100:
            seen = self._values.setdefault((device, offset), set())
            if value in seen or len(seen) < COVERAGE_VALUES_PER_REGISTER:
                seen.add(value)
                self.counts[f"value/{device}/{offset:#x}/{value:#x}"] += 1

    def stop(self) -> None:
        self.counts["stop/halted" if self.machine.cpu.halted else "stop/running"] += 1

    def snapshot(self) -> None:
        armed = any(
            t.pending and not t.external for t in self.machine.timer_lists[ClockKind.VIRTUAL].timers
        )
        self.counts["snapshot/timer-armed" if armed else "snapshot/no-timer"] += 1


class BuiltinTarget:
    """detfuzz's own machine."""

    name = "detfuzz"

    def run(self, spec: TargetRun) -> Trace:
        machine = Machine(
            spec.config,
            host_seed=spec.host_seed,
            host_profile=spec.host_profile,
            stimulus=spec.stimulus,
            mode=spec.mode,
            replay_log=spec.log if spec.mode is ReplayMode.REPLAY else None,
        )
        if spec.start_snapshot is not None:
            loadvm(machine, spec.start_snapshot, reverse_sections=spec.reverse_sections)
        else:
            load_program(machine, spec.program)
        session = Session(
            machine,
            snapshot_every=spec.snapshot_every,
            single_step=spec.single_step,
            reverse_sections=spec.reverse_sections,
        )
        run = _Run(spec, machine, session)
        activity = machine.trace_activity() if spec.trace_activity else None
        violations = machine.audit_io_icount() if spec.audit_icount else []
        counter = CoverageCounter(machine) if spec.coverage else None
        run.counter = counter
        if spec.observe or spec.dump_at is not None:
            points = {*spec.observe, *(() if spec.dump_at is None else (spec.dump_at,))}
            machine.observe(points, run.observed)
        try:
            run.main()
            run.seeks()
        except ReplayError as exc:
            run.error = exc
        log = machine.recorded_log() if spec.mode is ReplayMode.RECORD else None
        return Trace(
            samples=tuple(run.samples),
            final=run.final,
            stop=run.stop,
            log=log,
            snapshots=tuple(run.snapshots),
            seeks=tuple(run.seek_samples),
            error=run.error,
            replay_complete=run.replay_complete,
            observations=tuple(run.observations),
            dump=run.dump,
            activity=() if activity is None else tuple(activity.entries),
            icount_violations=tuple(violations),
            coverage=None if counter is None else dict(counter.counts),
            console=machine.console_output(),
            finisher_code=machine.finisher_code,
        )


class _Run:
    def __init__(self, spec: TargetRun, machine: Machine, session: Session) -> None:
        self.spec = spec
        self.machine = machine
        self.session = session
        self.samples: list[Sample] = []
        self.snapshots: list[TakenSnapshot] = []
        self.seek_samples: list[Sample] = []
        self.final: Sample | None = None
        self.stop: StopReason | None = None
        self.error: ReplayError | None = None
        self.replay_complete: bool | None = None
        self.observations: list[Sample] = []
        self.dump: dict[str, ComponentState] | None = None
        self.counter: CoverageCounter | None = None

    def observed(self, machine: Machine) -> None:
        icount = machine.cpu.icount
        if icount in self.spec.observe:
            self.observations.append(take_sample(machine))
        if icount == self.spec.dump_at:
            self.dump = {name: component_state(machine, name) for name in self.spec.dump_components}

    def main(self) -> None:
        spec, machine = self.spec, self.machine
        samples = set(spec.samples)
        snapshots = set(spec.snapshots)
        stops = {stop.icount: stop for stop in spec.stops}
        start = machine.cpu.icount
        points = sorted(p for p in samples | snapshots | set(stops) if start <= p <= spec.budget)
        reason = StopReason.BUDGET
        for point in [*points, spec.budget]:
            result = self.session.run_to(max(point, machine.cpu.icount))
            reason = result.reason
            if reason is not StopReason.BUDGET:
                break
            if point in samples and machine.cpu.icount == point:
                self.samples.append(take_sample(machine))
            if point in snapshots:
                self._snapshot(point)
            if point in stops:
                if self.counter is not None:
                    self.counter.stop()
                machine.stop()
                machine.pass_host_time(stops[point].host_ns)
                machine.cont()
        self.stop = reason
        self.final = take_sample(machine)
        if machine.mode is ReplayMode.REPLAY:
            self.replay_complete = machine.replay_at_end()

    def _snapshot(self, requested: int) -> None:
        machine = self.machine
        for _ in range(SNAPSHOT_RETRIES):
            data = self.session.take_snapshot()
            if data is not None:
                if self.counter is not None:
                    self.counter.snapshot()
                state = take_sample(machine)
                forward, reversed_ = self._reloaded(data)
                self.snapshots.append(
                    TakenSnapshot(
                        requested=requested,
                        icount=machine.cpu.icount,
                        data=data,
                        state=state,
                        reloaded=forward,
                        reloaded_reversed=reversed_,
                        host_timer_owners=_host_timer_owners(machine),
                        reload_differences=self._reload_differences(
                            data, state, (forward, reversed_)
                        ),
                    )
                )
                return
            if machine.run(1).reason is not StopReason.BUDGET:
                return

    def _reloaded(self, data: bytes) -> tuple[Sample, Sample]:
        """A fresh machine loaded with the snapshot's sections in the seeded order, and
        loaded again in the reverse order (loadvm replaces all of a machine's state)."""
        machine = Machine(self.spec.config)
        seed = self.spec.section_order_seed
        loadvm(machine, data, section_order_seed=seed)
        forward = take_sample(machine)
        loadvm(machine, data, section_order_seed=seed, reverse_sections=True)
        return forward, take_sample(machine)

    def _reload_differences(
        self, data: bytes, state: Sample, reloads: tuple[Sample, Sample]
    ) -> tuple[str, ...]:
        """The fields a reload got wrong, against the machine still here (rare: only a
        broken device gets here, so the loads are simply done again, keeping each)."""
        if all(r.digest == state.digest for r in reloads):
            return ()
        seed = self.spec.section_order_seed
        out: list[str] = []
        for label, reverse, reloaded in (
            ("forward", False, reloads[0]),
            ("reversed", True, reloads[1]),
        ):
            names = [
                n
                for n in sorted(state.components)
                if reloaded.components.get(n) != state.components[n]
            ]
            if not names:
                continue
            fresh = Machine(self.spec.config)
            loadvm(fresh, data, section_order_seed=seed, reverse_sections=reverse)
            for name in names[:RELOAD_DIFF_COMPONENTS]:
                out += [
                    f"{label}: {d}"
                    for d in component_differences(
                        name, component_state(self.machine, name), component_state(fresh, name)
                    )
                ]
        return tuple(out)

    def seeks(self) -> None:
        for target in self.spec.seeks:
            self.session.seek(target)
            self.seek_samples.append(take_sample(self.machine))
