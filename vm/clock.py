"""Clocks and timers: VIRTUAL from icount, REALTIME and HOST from the host model.

- VIRTUAL = bias + (icount << shift) ns. It stops when the VM stops; WFI with nothing
  pending warps the bias straight to the next virtual deadline (QEMU's `sleep=off`).
- REALTIME: host monotonic ns since the machine was built. It advances by the host time
  each slice took (the host model says how much) and while stopped. Never logged; only for
  host-side work.
- HOST: wall time = the host model's base + REALTIME scaled by its drift. A read that
  reaches the guest goes through the nondeterminism choke point.

A timer fires at the first instruction boundary where its clock has reached its deadline.
The CPU budget of a slice is ceil((deadline_ns - now_ns) / 2**shift) to the earliest
non-EXTERNAL virtual deadline (pinned). EXTERNAL virtual timers (host-side helpers such as
a NIC backend) are paced by guest time but neither bound slices nor run behind a checkpoint:
the main loop fires them on its host side, wherever that happens to be.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from vm.hostmodel import HostModel


class ClockKind(enum.Enum):
    REALTIME = "realtime"
    VIRTUAL = "virtual"
    HOST = "host"


class CheckpointKind(enum.Enum):
    """Points where QEMU's replay takes a checkpoint; part 3 logs them. String-valued and
    persisted: never rename a value."""

    CLOCK_VIRTUAL = "clock-virtual"  # before virtual timers run
    CLOCK_HOST = "clock-host"  # before HOST-clock timers run
    ASYNC = "async"  # before replay-scheduled bottom halves and async input run
    INIT = "init"
    RESET = "reset"


FIRINGS_MAX = 1_000


class Timer:
    """One armable timer on one clock; `deadline_ns` is None while it is not armed."""

    __slots__ = ("callback", "clock", "deadline_ns", "external", "owner", "seq")

    def __init__(
        self, owner: TimerList, callback: Callable[[], None], seq: int, *, external: bool
    ) -> None:
        self.owner = owner
        self.clock = owner.clock
        self.callback = callback
        self.external = external
        self.deadline_ns: int | None = None
        self.seq = seq  # creation order breaks ties between equal deadlines

    def mod(self, deadline_ns: int) -> None:
        """Arm (or re-arm) the timer for `deadline_ns` on its clock."""
        self.deadline_ns = max(0, deadline_ns)
        self.owner.changed = True

    def cancel(self) -> None:
        self.deadline_ns = None
        self.owner.changed = True

    @property
    def pending(self) -> bool:
        return self.deadline_ns is not None

    def expired(self, now_ns: int) -> bool:
        return self.deadline_ns is not None and self.deadline_ns <= now_ns


class TimerList:
    """All timers of one clock, in creation order."""

    def __init__(self, clock: ClockKind) -> None:
        self.clock = clock
        self.timers: list[Timer] = []
        # Set whenever a deadline moves, so the main loop recomputes its slice end lazily.
        self.changed = True
        # Runs each firing instead of calling the callback directly (vm.activity watches).
        self.on_fire: Callable[[Timer], None] | None = None

    def new(self, callback: Callable[[], None], *, external: bool = False) -> Timer:
        if external and self.clock is not ClockKind.VIRTUAL:
            raise ValueError("only virtual-clock timers take the EXTERNAL attribute")
        timer = Timer(self, callback, len(self.timers), external=external)
        self.timers.append(timer)
        return timer

    def next_deadline_ns(self, *, external: bool = False) -> int | None:
        """The earliest deadline among the (non-)EXTERNAL timers, or None."""
        deadlines = [
            t.deadline_ns
            for t in self.timers
            if t.deadline_ns is not None and t.external == external
        ]
        return min(deadlines) if deadlines else None

    def run_expired(self, now_ns: int, *, external: bool = False) -> bool:
        """Fire every (non-)EXTERNAL timer whose deadline has passed, earliest first (ties
        in creation order); a callback may re-arm its own or another timer. True if any.

        A timer that keeps re-arming itself in the past would fire forever: after
        `FIRINGS_MAX` firings the rest wait for the next instruction boundary."""
        fired = False
        for _ in range(FIRINGS_MAX):
            due = [t for t in self.timers if t.external == external and t.expired(now_ns)]
            if not due:
                return fired
            timer = min(due, key=lambda t: (t.deadline_ns, t.seq))
            timer.deadline_ns = None
            self.changed = True
            if self.on_fire is None:
                timer.callback()
            else:
                self.on_fire(timer)
            fired = True
        return fired


class VirtualClock:
    """VIRTUAL = bias + (icount << shift) ns."""

    def __init__(self, shift: int) -> None:
        self.shift = shift
        self.bias_ns = 0

    def now_ns(self, icount: int) -> int:
        return self.bias_ns + (icount << self.shift)

    def icount_at(self, deadline_ns: int, icount: int) -> int:
        """The first icount (not before `icount`) at which the clock reaches `deadline_ns`:
        a ceiling division, so the slice budget is ceil((deadline - now) / 2**shift)."""
        return max(icount, -(-(deadline_ns - self.bias_ns) >> self.shift))

    def warp_to(self, deadline_ns: int, icount: int) -> None:
        """Jump the clock forward to `deadline_ns` without executing anything."""
        gap = deadline_ns - self.now_ns(icount)
        if gap > 0:
            self.bias_ns += gap


class HostTime:
    """REALTIME (host monotonic ns since the machine was built) and the HOST wall clock."""

    def __init__(self, host: HostModel) -> None:
        self.realtime_ns = 0
        self.base_ns = host.host_clock_base_ns()
        self.drift_ppm = host.host_clock_drift_ppm()

    def advance(self, ns: int) -> None:
        self.realtime_ns += max(0, ns)

    def host_ns(self) -> int:
        """The HOST clock now: the base plus REALTIME running `drift_ppm` fast or slow."""
        return self.base_ns + self.realtime_ns + self.realtime_ns * self.drift_ppm // 1_000_000

    def realtime_for_host(self, host_ns: int) -> int:
        """The earliest REALTIME at which the HOST clock reads at least `host_ns`."""
        elapsed = host_ns - self.base_ns
        guess = max(0, elapsed * 1_000_000 // (1_000_000 + self.drift_ppm))
        while self.base_ns + guess + guess * self.drift_ppm // 1_000_000 < host_ns:
            guess += 1
        return guess
