"""Divergence localisation: from the first differing sample down to the exact instruction.

Two runs that must agree (`reference` and `checked`, both `TargetRun`s) are re-run with
observation points (`TargetRun.observe`: digests right after the instruction that reaches
each icount, before any other work there, without ending a CPU slice, so a re-run is the
very run that diverged, a recording included). Each round observes up to
`POINTS_PER_ROUND` icounts evenly spread over the interval still in doubt and keeps the
sub-interval where the first difference lies, so a 100,000-instruction gap takes three
rounds. A last pair of runs dumps the differing components' fields there and logs what ran
around the guest (timers, bottom halves, stimulus, stop/cont, with the state each host-side
callback changed).

If every observation up to the differing sample is equal, the instruction boundary itself
agrees and the difference comes from the main-loop work at that icount (timers, async
events, interrupts, host work): `in_main_loop`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from vm.activity import Activity, Side
from vm.digest import component_differences
from vm.replaylog import EventKind, read_log
from vm.trace import Sample, Target, TargetRun, Trace

POINTS_PER_ROUND: Final = 48
# Components a dump captures at most (RAM pages dominate when many differ).
DUMP_COMPONENTS_MAX: Final = 8
EVENTS_AROUND: Final = 4


@dataclasses.dataclass(frozen=True)
class Point:
    """Where two runs first differ, and the evidence gathered there."""

    icount: int
    last_equal: int
    in_main_loop: bool
    components: tuple[str, ...]
    differences: tuple[str, ...]
    activity: tuple[tuple[str, Activity], ...]  # (run name, entry), in icount order
    pc: int | None
    runs: int


def differing_components(a: Sample, b: Sample) -> tuple[str, ...]:
    keys = a.components.keys() | b.components.keys()
    return tuple(sorted(k for k in keys if a.components.get(k) != b.components.get(k)))


def _spread(lo: int, hi: int, count: int) -> list[int]:
    """Up to `count` icounts in (lo, hi], evenly spread, `hi` included."""
    span = hi - lo
    if span <= count:
        return list(range(lo + 1, hi + 1))
    return sorted({lo + (span * i) // count for i in range(1, count + 1)})


def _observed(trace: Trace) -> dict[int, Sample]:
    return {s.icount: s for s in trace.observations}


def localise(
    target: Target,
    reference: TargetRun,
    checked: TargetRun,
    *,
    last_equal: int,
    first_differing: int,
    components: Sequence[str] = (),
) -> Point:
    """Narrow the difference between the two runs to one instruction in
    (last_equal, first_differing], or to the main-loop work at an icount there.
    `components` (those differing at the sample) stand in when the runs end before any
    instruction boundary after the difference."""
    lo, hi = last_equal, first_differing
    runs = 0
    while True:
        points = _spread(lo, hi, POINTS_PER_ROUND)
        seen_ref, seen_got = _observe(target, reference, checked, points)
        runs += 2
        previous, first = _first_difference(points, seen_ref, seen_got, start=lo)
        if first is None:
            # Equal at every boundary up to the differing sample (or as far as both runs
            # got): the work the main loop did at `previous` is where they part.
            icount, at, in_main_loop = previous, previous + 1, True
            seen_ref, seen_got = _observe(target, reference, checked, [at])
            runs += 2
            break
        if first == previous + 1:
            icount, at, in_main_loop = first, first, False
            break
        lo, hi = previous, first
    a, b = seen_ref.get(at), seen_got.get(at)
    differing = differing_components(a, b) if a is not None and b is not None else ()
    return _evidence(
        target,
        reference,
        checked,
        icount=icount,
        at=at,
        last_equal=previous if in_main_loop else lo,
        in_main_loop=in_main_loop,
        components=differing or tuple(components),
        runs=runs,
    )


def _observe(
    target: Target, reference: TargetRun, checked: TargetRun, points: Sequence[int]
) -> tuple[dict[int, Sample], dict[int, Sample]]:
    ref = target.run(dataclasses.replace(reference, observe=tuple(points)))
    got = target.run(dataclasses.replace(checked, observe=tuple(points)))
    return _observed(ref), _observed(got)


def _first_difference(
    points: Sequence[int], ref: dict[int, Sample], got: dict[int, Sample], *, start: int
) -> tuple[int, int | None]:
    """(last point both runs agree at, first point they differ at or None)."""
    previous = start
    for k in points:
        a, b = ref.get(k), got.get(k)
        if a is None or b is None:
            break  # a run ended (or failed) before k
        if a.digest != b.digest:
            return previous, k
        previous = k
    return previous, None


def _evidence(
    target: Target,
    reference: TargetRun,
    checked: TargetRun,
    *,
    icount: int,
    at: int,
    last_equal: int,
    in_main_loop: bool,
    components: tuple[str, ...],
    runs: int,
) -> Point:
    """Re-run both sides once more, dumping the differing components at `at` and logging
    the activity around the guest; and the reference once to find the instruction."""
    dumped = ("cpu", *(c for c in _dump_order(components) if c != "cpu"))[:DUMP_COMPONENTS_MAX]
    probe = {"dump_at": at, "dump_components": dumped, "trace_activity": True}
    ref = target.run(dataclasses.replace(reference, **probe))  # type: ignore[arg-type]
    got = target.run(dataclasses.replace(checked, **probe))  # type: ignore[arg-type]
    runs += 2
    differences: tuple[str, ...] = ()
    if ref.dump is not None and got.dump is not None:
        differences = tuple(
            str(d)
            for name in dumped
            for d in component_differences(name, ref.dump[name], got.dump[name])
        )
    pc = None
    if not in_main_loop and at > 0:
        # The pc before the instruction that reached `at`: that instruction.
        before = target.run(
            dataclasses.replace(reference, dump_at=at - 1, dump_components=("cpu",))
        )
        runs += 1
        if before.dump is not None:
            pc = _field(before.dump["cpu"], "cpu.pc")
    elif ref.dump is not None:
        pc = _field(ref.dump["cpu"], "cpu.pc")
    return Point(
        icount=icount,
        last_equal=last_equal,
        in_main_loop=in_main_loop,
        components=components,
        differences=differences,
        activity=_around(ref, got, last_equal, at),
        pc=pc,
        runs=runs,
    )


def _field(state: object, path: str) -> int | None:
    if isinstance(state, tuple):
        for name, value in state:
            if name == path and isinstance(value, int):
                return value
    return None


def _dump_order(components: Sequence[str]) -> tuple[str, ...]:
    """Devices and the CPU before RAM pages: they say more per line."""
    return tuple(sorted(components, key=lambda c: (c.startswith("ram["), c)))


def _around(ref: Trace, got: Trace, lo: int, hi: int) -> tuple[tuple[str, Activity], ...]:
    """The activity of both runs at icounts in [lo, hi], the checked run's first."""
    entries = [("checked", e) for e in got.activity if lo <= e.icount <= hi]
    entries += [("reference", e) for e in ref.activity if lo <= e.icount <= hi]
    return tuple(sorted(entries, key=lambda item: (item[1].icount, item[0] != "checked")))


def host_effects(point: Point) -> list[Activity]:
    """Host-side activity (and stop/cont) near the point that changed guest state."""
    return [e for _, e in point.activity if e.side is Side.HOST and e.changed]


def events_around(log: bytes | None, icount: int) -> tuple[str, ...]:
    """The log events nearest `icount`, each with its index and icount."""
    if log is None:
        return ()
    try:
        events = read_log(log).events
    except ValueError:
        return ()
    placed = []
    at = 0
    for index, event in enumerate(events):
        if event.kind is EventKind.INSTRUCTION:
            at += event.args[0]  # type: ignore[operator]
            continue
        placed.append((index, at, event))
    before = [p for p in placed if p[1] <= icount][-EVENTS_AROUND:]
    after = [p for p in placed if p[1] > icount][:EVENTS_AROUND]
    return tuple(f"#{i} @{ic}: {e}" for i, ic, e in [*before, *after])
