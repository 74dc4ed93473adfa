"""Timers on the VIRTUAL clock (virtual ns = icount << shift).

A timer fires at the first instruction boundary where the virtual clock has reached its
deadline; the run loop gives the CPU a budget that ends exactly there:
ceil((deadline_ns - now_ns) / 2**shift) instructions (pinned).
"""

from __future__ import annotations

from collections.abc import Callable


class VirtualTimer:
    """One armable timer; `deadline_ns` is None while it is not armed."""

    __slots__ = ("callback", "deadline_ns", "owner", "seq")

    def __init__(self, owner: TimerList, callback: Callable[[], None], seq: int) -> None:
        self.owner = owner
        self.callback = callback
        self.deadline_ns: int | None = None
        self.seq = seq  # creation order breaks ties between equal deadlines

    def mod(self, deadline_ns: int) -> None:
        self.deadline_ns = max(0, deadline_ns)
        self.owner.changed = True

    def cancel(self) -> None:
        self.deadline_ns = None
        self.owner.changed = True

    @property
    def pending(self) -> bool:
        return self.deadline_ns is not None


class TimerList:
    """All virtual timers of a machine, in creation order."""

    def __init__(self) -> None:
        self.timers: list[VirtualTimer] = []
        # Set whenever a deadline moves, so the run loop recomputes its slice end lazily.
        self.changed = True

    def new(self, callback: Callable[[], None]) -> VirtualTimer:
        timer = VirtualTimer(self, callback, len(self.timers))
        self.timers.append(timer)
        return timer

    def next_deadline_ns(self) -> int | None:
        deadlines = [t.deadline_ns for t in self.timers if t.deadline_ns is not None]
        return min(deadlines) if deadlines else None

    def run_expired(self, now_ns: int) -> bool:
        """Fire every timer whose deadline has passed, earliest first; True if any fired."""
        fired = False
        while True:
            due = [t for t in self.timers if t.deadline_ns is not None and t.deadline_ns <= now_ns]
            if not due:
                return fired
            timer = min(due, key=lambda t: (t.deadline_ns, t.seq))
            timer.deadline_ns = None
            timer.callback()
            fired = True
