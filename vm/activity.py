"""What ran around the guest: a bounded log of timer firings, bottom halves, host input
arriving and stop/cont, for explaining a divergence ("which timer, BH or stimulus ran just
before, on which clock").

Off by default (`Machine.trace_activity(...)`); when on, each entry costs one append.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

# Entries kept: enough to see what led up to a divergence, bounded for long runs.
ACTIVITY_MAX: Final = 256


class ActivityKind(enum.Enum):
    TIMER = "timer"  # a timer callback ran
    BOTTOM_HALF = "bh"  # a bottom half ran
    STIMULUS = "stimulus"  # host input arrived in a backend
    RUNSTATE = "runstate"  # the VM stopped or continued


class Side(enum.Enum):
    """Where it ran: at the guest side of an instruction boundary (behind a checkpoint or
    at the async point, where a replay reproduces it) or on the host side (where the host's
    timing decides, and nothing may change guest state)."""

    GUEST = "guest"
    HOST = "host"


@dataclass(frozen=True, slots=True)
class Activity:
    icount: int
    realtime_ns: int
    kind: ActivityKind
    side: Side
    owner: str  # the device (or callback) it belongs to
    detail: str = ""  # the clock and timer flavour, the channel, "stop"/"cont"
    # The state components it changed (host side and stop/cont only: there any change
    # breaks a rule; the guest side changes state by design, so it is not measured).
    changed: tuple[str, ...] = ()

    def __str__(self) -> str:
        detail = f" {self.detail}" if self.detail else ""
        changed = f", changed {', '.join(self.changed)}" if self.changed else ""
        return (
            f"@{self.icount} (host {self.realtime_ns} ns) {self.side.value}: "
            f"{self.kind.value} of {self.owner}{detail}{changed}"
        )


class ActivityLog:
    def __init__(self, maxlen: int = ACTIVITY_MAX) -> None:
        self.entries: deque[Activity] = deque(maxlen=maxlen)

    def add(self, entry: Activity) -> None:
        self.entries.append(entry)

    def before(self, icount: int) -> tuple[Activity, ...]:
        """The entries at or before `icount`."""
        return tuple(e for e in self.entries if e.icount <= icount)


def callback_owner(callback: object) -> str:
    """A readable owner for a callback: its device's name, else its qualified name."""
    owner = getattr(callback, "__self__", None)
    name = getattr(owner, "name", None)
    if isinstance(name, str):
        return name
    return str(getattr(callback, "__qualname__", repr(callback)))
