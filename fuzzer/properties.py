"""The determinism properties: each compares traces of one scenario at the same sample
points, through the trace API only (vm.trace), so another target could stand behind it.

One check shares runs between the properties: the recording (host seed A) serves 1, 2, 3,
4 and 6; the straight replay (host seed B) serves 1, 3, 4 and 5. Every sample point the
scenario names (its samples, stops, snapshots and seeks) is sampled in every run, so any
two runs compare there.

A finding is a `Divergence`; a replay error is one (with the error attached), and so is an
exception raised from machine or device code, or a check that exceeds its wall-clock
limit: the fuzzer itself never crashes on what it fuzzes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from fuzzer.coverage import features
from fuzzer.divergence import (
    Divergence,
    DivergenceKind,
    Localisation,
    Property,
    Rule,
)
from fuzzer.localize import Point, differing_components, events_around, localise
from vm.activity import Activity, ActivityKind, Side
from vm.devices import Device
from vm.replay import ReplayMode
from vm.trace import BuiltinTarget, Sample, Stop, TakenSnapshot, Target, TargetRun, Trace

if TYPE_CHECKING:
    from fuzzer.scenario import Scenario

ALL_PROPERTIES: Final = tuple(Property)
# Interrupt controllers: a difference there is usually the echo of one in a device.
_ECHO_COMPONENTS: Final = ("plic", "clint")


class WallClockExceeded(Exception):
    """The per-check wall-clock limit passed (raised by the timer, caught by `check`)."""


@dataclass
class Runs:
    """The traces one check made, shared between properties (None: not needed)."""

    record: Trace | None = None
    record_again: Trace | None = None
    none: Trace | None = None
    replay: Trace | None = None
    replay_stops: Trace | None = None
    tails: list[tuple[int, Trace]] = field(default_factory=list)
    seek: Trace | None = None
    specs: dict[str, TargetRun] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckResult:
    divergences: tuple[Divergence, ...]
    runs: int  # target runs made (localisation included)
    coverage: Mapping[str, int]  # the features the recording reached (fuzzer.coverage)


# -- the check ------------------------------------------------------------------------------


def check(
    scenario: Scenario,
    *,
    properties: Sequence[Property] = ALL_PROPERTIES,
    target: Target | None = None,
    localise_divergences: bool = True,
    wall_clock_s: float | None = None,
) -> CheckResult:
    """Run every selected property on `scenario`; the divergences found (at most one per
    property: the first). Deterministic for a given scenario."""
    checker = _Checker(
        scenario, target or BuiltinTarget(), set(properties), localise=localise_divergences
    )
    try:
        with _wall_clock_limit(wall_clock_s):
            checker.run_all()
    except WallClockExceeded:
        checker.found.append(
            _finding(
                Property.RECORD_REPLAY if not checker.current else checker.current,
                DivergenceKind.TIMEOUT,
                "machine",
                Rule.WALL_CLOCK,
                f"the check exceeded its wall-clock limit of {wall_clock_s} s",
            )
        )
    return CheckResult(tuple(checker.found), checker.runs, checker.coverage)


class _Checker:
    def __init__(
        self, scenario: Scenario, target: Target, properties: set[Property], *, localise: bool
    ) -> None:
        self.scenario = scenario
        self.target = target
        self.properties = properties
        self.localise = localise
        self.found: list[Divergence] = []
        self.runs = 0
        self.current: Property | None = None
        self.points = _sample_points(scenario)
        self.coverage: dict[str, int] = {}

    # -- runs ---------------------------------------------------------------------------

    def _run(self, prop: Property, spec: TargetRun, *, quiet: bool = False) -> Trace | None:
        """One target run; an exception out of the machine is a CRASH finding (with
        `quiet`, not yet: None, and the caller decides)."""
        self.current = prop
        self.runs += 1
        try:
            return self.target.run(spec)
        except (WallClockExceeded, KeyboardInterrupt):
            raise
        except Exception as exc:  # anything the machine or a device raises is a finding
            if not quiet:
                self.found.append(_crash(prop, exc))
            return None

    def _spec(self, mode: ReplayMode, host_seed: int, **changes: object) -> TargetRun:
        """A plain run of the scenario in `mode`, sampled at every point; stops, snapshots
        and seeks only where a property asks for them (`changes`)."""
        fields: dict[str, object] = {
            "samples": self.points,
            "stops": (),
            "snapshots": (),
            "seeks": (),
            "snapshot_every": None,
            "section_order_seed": self.scenario.section_order_seed,
        }
        fields.update(changes)
        return self.scenario.trace_run(mode, host_seed, **fields)

    def run_all(self) -> None:
        seed_a, seed_b = self.scenario.host_seeds
        props = self.properties
        record_spec = self._spec(
            ReplayMode.RECORD, seed_a, snapshots=tuple(self.scenario.snapshots), coverage=True
        )
        record = self._run(Property.RECORD_REPLAY, record_spec)
        if record is None:
            return
        self.coverage = features(record.coverage, self.scenario.config)
        # The runs compared with the recording need not take its snapshots (savevm changes
        # nothing, and the snapshot points are sample points in every run anyway), unless
        # a refused savevm made the recording run on instruction by instruction.
        retried = any(t.icount != t.requested for t in record.snapshots)
        plain_spec = dataclasses.replace(
            record_spec, coverage=False, snapshots=record_spec.snapshots if retried else ()
        )
        if Property.DETERMINISM in props:
            self._determinism(plain_spec, record)
        if Property.RECORD_NONE in props:
            none_spec = dataclasses.replace(plain_spec, mode=ReplayMode.NONE)
            none = self._run(Property.RECORD_NONE, none_spec)
            if none is not None:
                self._compare(Property.RECORD_NONE, none_spec, none, record_spec, record)
        needs_replay = props & {
            Property.RECORD_REPLAY,
            Property.STOP_CONT,
            Property.SNAPSHOT,
            Property.SEEK,
        }
        if not needs_replay:
            return
        replay_spec = dataclasses.replace(
            record_spec,
            mode=ReplayMode.REPLAY,
            log=record.log,
            host_seed=seed_b,
            snapshots=(),
            coverage=False,
        )
        seek_spec = None
        sought = replay = None
        if Property.SEEK in props and self.scenario.seeks:
            seek_spec = dataclasses.replace(
                replay_spec,
                snapshot_every=self.scenario.seek_interval(),
                seeks=tuple(self.scenario.seeks),
            )
            sought = self._run(Property.SEEK, seek_spec, quiet=True)
            if sought is not None and _replays_whole(record, sought):
                # The seeking replay runs straight through the log before it seeks, and
                # there it matched the recording at every sample: it serves as the straight
                # replay too (one run fewer). Anything else, and the straight replay runs
                # on its own, so each finding is the property's that shows it.
                replay = sought
        if replay is None:
            replay = self._run(Property.RECORD_REPLAY, replay_spec)
            if replay is None:
                return
        if Property.RECORD_REPLAY in props:
            self._record_replay(record_spec, record, replay_spec, replay)
        if replay.error is not None:
            return  # the other replays would only meet the same error
        if Property.STOP_CONT in props and self.scenario.stops:
            self._stops(replay_spec, replay)
        if Property.SNAPSHOT in props:
            self._snapshots(record, replay_spec, replay)
        if seek_spec is not None:
            if sought is None:  # it raised: again, as a finding of its own
                sought = self._run(Property.SEEK, seek_spec)
            if sought is not None:
                self._seeks(replay_spec, replay, seek_spec, sought)

    # -- the properties -------------------------------------------------------------------

    def _determinism(self, spec: TargetRun, record: Trace) -> None:
        """Record again with the same host seed: the same log bytes and states."""
        again = self._run(Property.DETERMINISM, dataclasses.replace(spec, mode=ReplayMode.RECORD))
        if again is None:
            return
        if again.log != record.log:
            index = _first_log_difference(record.log or b"", again.log or b"")
            self.found.append(
                _finding(
                    Property.DETERMINISM,
                    DivergenceKind.LOG,
                    "log",
                    Rule.EMULATOR_DETERMINISM,
                    f"two recordings with host seed {spec.host_seed} wrote different logs "
                    f"(first difference at byte {index})",
                )
            )
            return
        self._compare(Property.DETERMINISM, spec, record, spec, again)

    def _record_replay(
        self, record_spec: TargetRun, record: Trace, replay_spec: TargetRun, replay: Trace
    ) -> None:
        if replay.error is not None:
            self._replay_error(record_spec, record, replay_spec, replay)
            return
        if self._compare(Property.RECORD_REPLAY, record_spec, record, replay_spec, replay):
            return
        if not replay.replay_complete:
            self.found.append(
                _finding(
                    Property.RECORD_REPLAY,
                    DivergenceKind.REPLAY_ERROR,
                    "replay",
                    Rule.LOGGED_INPUT,
                    "the replay stopped before the end of the log "
                    f"(stop {replay.stop.value if replay.stop else None})",
                )
            )

    def _stops(self, replay_spec: TargetRun, replay: Trace) -> None:
        spec = dataclasses.replace(replay_spec, stops=tuple(self.scenario.stops), coverage=True)
        stopped = self._run(Property.STOP_CONT, spec)
        if stopped is None:
            return
        for name, count in features(stopped.coverage, self.scenario.config).items():
            if name.startswith("stop."):  # what stops reached (the rest the recording counts)
                self.coverage[name] = self.coverage.get(name, 0) + count
        if stopped.error is not None:
            self._replay_error(replay_spec, replay, spec, stopped, prop=Property.STOP_CONT)
            return
        self._compare(Property.STOP_CONT, replay_spec, replay, spec, stopped)

    def _snapshots(self, record: Trace, replay_spec: TargetRun, replay: Trace) -> None:
        for taken in record.snapshots:
            if taken.reloaded.digest != taken.state.digest or (
                taken.reloaded_reversed.digest != taken.state.digest
            ):
                self.found.append(_reload_divergence(taken.icount, taken, record.log))
                return
        for taken in record.snapshots:
            spec = dataclasses.replace(replay_spec, start_snapshot=taken.data)
            tail = self._run(Property.SNAPSHOT, spec)
            if tail is None:
                return
            if tail.error is not None:
                self._replay_error(replay_spec, replay, spec, tail, prop=Property.SNAPSHOT)
                return
            if self._compare(
                Property.SNAPSHOT, replay_spec, replay, spec, tail, start=taken.icount
            ):
                return

    def _seeks(self, replay_spec: TargetRun, replay: Trace, spec: TargetRun, sought: Trace) -> None:
        if sought.error is not None:
            self._replay_error(replay_spec, replay, spec, sought, prop=Property.SEEK)
            return
        straight = {s.icount: s for s in replay.samples}
        for s in sought.seeks:
            ref = straight.get(s.icount)
            if ref is not None and ref.digest != s.digest:
                components = differing_components(ref, s)
                rule = self._rule(Property.SEEK, replay_spec, spec, sought, 0, s.icount)
                self.found.append(
                    _finding(
                        Property.SEEK,
                        DivergenceKind.DIGEST,
                        first_component(components),
                        rule,
                        f"seeking to icount {s.icount} lands on another state than the "
                        f"straight replay ({', '.join(components[:6])} differ)",
                        icount=s.icount,
                        expected=ref.digest,
                        observed=s.digest,
                    )
                )
                return

    # -- comparing and explaining ------------------------------------------------------------

    def _compare(
        self,
        prop: Property,
        ref_spec: TargetRun,
        ref: Trace,
        got_spec: TargetRun,
        got: Trace,
        *,
        start: int = 0,
    ) -> bool:
        """Compare two traces sample by sample; record the first difference. True if any."""
        difference = first_difference(ref, got, start=start)
        if difference is None:
            return False
        last_equal, a, b = difference
        # The signature comes from the sample and the window before it alone, so it is the
        # same whether or not the divergence is localised (shrinking skips localisation).
        components = differing_components(a, b)
        component = first_component(components)
        rule = self._rule(prop, ref_spec, got_spec, got, last_equal, a.icount)
        point = None
        if self.localise:
            point = localise(
                self.target,
                ref_spec,
                got_spec,
                last_equal=last_equal,
                first_differing=a.icount,
                components=components,
            )
            self.runs += point.runs
        self.found.append(
            _finding(
                prop,
                DivergenceKind.DIGEST,
                component,
                rule,
                f"the states differ at sample icount {a.icount} "
                f"({', '.join(components[:6])}{'...' if len(components) > 6 else ''})",
                icount=a.icount,
                expected=a.digest,
                observed=b.digest,
                localisation=_localisation(point, ref.log or got.log),
            )
        )
        return True

    def _replay_error(
        self,
        ref_spec: TargetRun,
        ref: Trace,
        got_spec: TargetRun,
        got: Trace,
        *,
        prop: Property = Property.RECORD_REPLAY,
    ) -> None:
        error = got.error
        assert error is not None
        # The component: what differs first in the states before the error, if anything
        # (observed at the error and at a few points before it), else the replay itself.
        component = self._state_before_error(ref_spec, got_spec, error.icount)
        rule = self._rule(prop, ref_spec, got_spec, got, 0, error.icount)
        point = None
        if self.localise and error.icount > 0:
            point = localise(
                self.target,
                ref_spec,
                got_spec,
                last_equal=0,
                first_differing=error.icount,
            )
            self.runs += point.runs
        self.found.append(
            _finding(
                prop,
                DivergenceKind.REPLAY_ERROR,
                component,
                rule,
                f"the replay failed: {error}",
                icount=error.icount,
                error=error.to_dict(),
                localisation=_localisation(point, ref.log or got_spec.log),
            )
        )

    def _state_before_error(self, ref_spec: TargetRun, got_spec: TargetRun, icount: int) -> str:
        points = sorted({max(0, icount * i // 8) for i in range(1, 9)})
        ref = self.target.run(dataclasses.replace(ref_spec, observe=tuple(points)))
        got = self.target.run(dataclasses.replace(got_spec, observe=tuple(points)))
        self.runs += 2
        theirs = {s.icount: s for s in got.observations}
        for a in ref.observations:
            b = theirs.get(a.icount)
            if b is not None and a.digest != b.digest:
                return first_component(differing_components(a, b))
        return "replay"

    def _host_effects(
        self, ref_spec: TargetRun, got_spec: TargetRun, lo: int, hi: int
    ) -> list[Activity]:
        """What changed guest state on the host side (or at stop/cont) in either run, at
        icounts in [lo, hi]."""
        effects = []
        for spec in (ref_spec, got_spec):
            traced = self.target.run(dataclasses.replace(spec, trace_activity=True))
            self.runs += 1
            effects += [
                e
                for e in traced.activity
                if e.side is Side.HOST and e.changed and lo <= e.icount <= hi
            ]
        return sorted(effects, key=lambda e: e.icount)

    def _rule(
        self,
        prop: Property,
        ref_spec: TargetRun,
        got_spec: TargetRun,
        got: Trace,
        lo: int,
        hi: int,
    ) -> Rule:
        """The rule the runs show broken, from the property, what changed guest state on
        the host side in the window [lo, hi] before the divergence and, failing that, two
        experiments: does the execution engine matter, and does the host seed matter.
        Never from the configuration."""
        if prop is Property.DETERMINISM:
            return Rule.EMULATOR_DETERMINISM
        effect = rule_of_effects(self._host_effects(ref_spec, got_spec, lo, hi))
        if effect is not None:
            return effect
        at = hi
        if self._icount_violated(got_spec) or self._engine_sensitive(ref_spec, at):
            return Rule.EXACT_ICOUNT
        if prop in (Property.SNAPSHOT, Property.SEEK):
            if self._order_sensitive(got_spec, got):
                # Loading the device sections in another order changes what the loaded
                # machine does: some post_load reached into another device.
                return Rule.POST_LOAD_OWN_DEVICE
            if not self._host_sensitive(got_spec, got):
                # The loaded machine goes its own way whatever the host does: it was not
                # restored whole.
                return Rule.SAVE_EVERY_FIELD
        # A host value reached the guest around the log (a stop only lets host time pass,
        # a snapshot only starts another host: the same holds there).
        return Rule.LOGGED_INPUT

    def _icount_violated(self, spec: TargetRun) -> bool:
        """Whether a device was handed another icount than its instruction's, in the run."""
        audited = self.target.run(dataclasses.replace(spec, audit_icount=True))
        self.runs += 1
        return bool(audited.icount_violations)

    def _engine_sensitive(self, spec: TargetRun, at: int) -> bool:
        """Whether the run depends on the execution engine: the same run interpreted one
        instruction at a time (the reference engine, which hands devices the exact icount
        by construction) reaches another state at `at` or at its end. Host timing is the
        same in both, so only what a device sees of the icount can differ."""
        plain = dataclasses.replace(
            spec,
            mode=ReplayMode.NONE,
            log=None,
            stops=(),
            seeks=(),
            snapshots=(),
            start_snapshot=None,
            observe=(at,),
        )
        blocks = self.target.run(plain)
        stepped = self.target.run(dataclasses.replace(plain, single_step=True))
        self.runs += 2
        return blocks.observations != stepped.observations or blocks.final != stepped.final

    def _host_sensitive(self, spec: TargetRun, trace: Trace) -> bool:
        """Whether the same run with another host seed reaches other states."""
        other = self.target.run(dataclasses.replace(spec, host_seed=spec.host_seed ^ 0x5EED))
        self.runs += 1
        return _differs(other, trace)

    def _order_sensitive(self, spec: TargetRun, trace: Trace) -> bool:
        """Whether the same run, loading its snapshots (the start one, the seeks') with the
        device sections in the reverse order, reaches other states or another end."""
        if spec.start_snapshot is None and not spec.seeks:
            return False
        other = self.target.run(
            dataclasses.replace(spec, reverse_sections=not spec.reverse_sections)
        )
        self.runs += 1
        return _differs(other, trace) or _error_kind(other) != _error_kind(trace)


def _replays_whole(record: Trace, replay: Trace) -> bool:
    """Whether a replay consumed the whole log without error and matched the recording at
    every sample and at the end."""
    return (
        replay.error is None
        and replay.replay_complete
        and [s.icount for s in replay.samples] == [s.icount for s in record.samples]
        and first_difference(record, replay) is None
    )


def _differs(a: Trace, b: Trace) -> bool:
    return a.samples != b.samples or a.final != b.final or a.seeks != b.seeks


def _error_kind(trace: Trace) -> str | None:
    return None if trace.error is None else type(trace.error).__name__


# -- pure helpers -----------------------------------------------------------------------------


def _sample_points(scenario: Scenario) -> tuple[int, ...]:
    stops: Sequence[Stop] = scenario.stops
    points = {
        *scenario.samples,
        *(s.icount for s in stops),
        *scenario.snapshots,
        *scenario.seeks,
    }
    return tuple(sorted(p for p in points if 0 <= p <= scenario.budget))


def first_difference(
    ref: Trace, got: Trace, *, start: int = 0
) -> tuple[int, Sample, Sample] | None:
    """(last equal icount, reference sample, checked sample) at the first sample both
    traces have and whose digests differ; the final states count as a sample when both
    runs ended at the same icount, and as a difference when they did not."""
    last_equal = start
    theirs = {s.icount: s for s in got.samples}
    for a in ref.samples:
        if a.icount < start:
            continue
        b = theirs.get(a.icount)
        if b is None:
            continue
        if a.digest != b.digest:
            return last_equal, a, b
        last_equal = a.icount
    fa, fb = ref.final, got.final
    if fa is None or fb is None:
        return None
    if fa.icount != fb.icount or fa.digest != fb.digest:
        return last_equal, fa, fb
    return None


# Display order for "the first diverging component": the device that is the likely
# source before the interrupt controllers it raises, the CPU, the clock and memory.
def first_component(components: Sequence[str]) -> str:
    if not components:
        return "machine"

    def rank(name: str) -> tuple[int, str]:
        if name.startswith("ram["):
            return (5, name)
        order = {"cpu": 3, "clock": 2, "rom": 4}
        if name in order:
            return (order[name], name)
        return (1 if name in _ECHO_COMPONENTS else 0, name)

    best = min(components, key=rank)
    return "ram" if best.startswith("ram[") else best


def rule_of_effects(effects: Sequence[Activity]) -> Rule | None:
    """The rule broken by what changed guest state on the host side (or at stop/cont)
    before the divergence, the latest first; None if nothing did."""
    for entry in reversed(effects):
        if entry.kind is ActivityKind.TIMER:
            return Rule.VIRTUAL_TIMERS
        if entry.kind is ActivityKind.BOTTOM_HALF:
            return Rule.REPLAY_BOTTOM_HALVES
        if entry.kind is ActivityKind.RUNSTATE:
            return Rule.STOP_CONT_INVISIBLE
    return None


def _reload_divergence(icount: int, taken: TakenSnapshot, log: bytes | None) -> Divergence:
    """A snapshot that does not reload to the machine it was taken from. If the two
    section orders give different machines, some post_load reached another device."""
    forward = differing_components(taken.state, taken.reloaded)
    backward = differing_components(taken.state, taken.reloaded_reversed)
    order_dependent = taken.reloaded.digest != taken.reloaded_reversed.digest
    components = tuple(sorted(set(forward) | set(backward)))
    waiting = sorted(set(components) & set(taken.host_timer_owners))
    if order_dependent:
        rule = Rule.POST_LOAD_OWN_DEVICE
        how = "loading the device sections in two orders gives two different machines"
    elif waiting:
        # Guest state that differs on a device with a host-side timer armed: state waiting
        # on a timer no snapshot carries, because no rule lets it change guest state.
        rule = Rule.VIRTUAL_TIMERS
        how = f"{', '.join(waiting)} had a host-side timer armed, which no snapshot carries"
    else:
        rule = Rule.SAVE_EVERY_FIELD
        how = "the reloaded machine differs whatever the section order"
    wrong = taken.reloaded if forward else taken.reloaded_reversed
    # No re-runs needed to localise it: the snapshot point is the place, the loads are the
    # work, and the run listed the fields they got wrong.
    where = Localisation(
        icount=icount,
        last_equal=icount,
        in_main_loop=True,
        pc=None,
        components=components,
        differences=taken.reload_differences,
        activity=(),
        events=events_around(log, icount),
        runs=0,
    )
    return _finding(
        Property.SNAPSHOT,
        DivergenceKind.RELOAD,
        first_component(components),
        rule,
        f"loadvm(savevm(m)) at icount {icount} is not m: {how} ({', '.join(components[:6])})",
        icount=icount,
        expected=taken.state.digest,
        observed=wrong.digest,
        localisation=where,
    )


def _finding(
    prop: Property,
    kind: DivergenceKind,
    component: str,
    rule: Rule,
    detail: str,
    **extra: object,
) -> Divergence:
    return Divergence(
        property=prop, kind=kind, component=component, rule=rule, detail=detail, **extra
    )  # type: ignore[arg-type]


def _crash(prop: Property, exc: BaseException) -> Divergence:
    """An exception out of the machine: named after the device whose code raised it."""
    component = "machine"
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, Device):
            component = getattr(owner, "name", type(owner).__name__)
    where = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return _finding(
        prop,
        DivergenceKind.CRASH,
        component,
        Rule.DEVICE_EXCEPTION,
        f"{component} raised {where}",
        notes=tuple(traceback.format_tb(exc.__traceback__)[-3:]),
    )


def _localisation(point: Point | None, log: bytes | None) -> Localisation | None:
    if point is None:
        return None
    return Localisation(
        icount=point.icount,
        last_equal=point.last_equal,
        in_main_loop=point.in_main_loop,
        pc=point.pc,
        components=point.components,
        differences=point.differences,
        activity=tuple(f"[{run}] {entry}" for run, entry in point.activity),
        events=events_around(log, point.icount),
        runs=point.runs,
    )


def _first_log_difference(a: bytes, b: bytes) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


@contextlib.contextmanager
def _wall_clock_limit(seconds: float | None) -> Iterator[None]:
    """Raise WallClockExceeded in this (main) thread after `seconds` of wall time. Only the
    main thread can take a signal; elsewhere the limit is the caller's (a campaign
    worker process is killed from outside)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise WallClockExceeded

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
