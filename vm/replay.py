"""The record/replay engine (QEMU's `replay/` subsystem): what each mode does at each hook.

The machine calls the same hooks in every mode; an engine decides what they mean:

- `Recorder` writes every non-deterministic input that reaches the guest (through the
  choke point of vm.nondet) and every point the main loop gates on, as log events
  (vm.replaylog), and lets all of them happen.
- `Replayer` reads the log back. The vCPU budget is what is left of the current
  INSTRUCTION record, so the next event is met at exactly its icount; a checkpoint lets its
  work run only when the log says so; an interrupt is taken only where the log says; async
  events run when the log says, with their payload from the log (live host input is
  dropped) and bottom halves and block completions matched by kind and id. Unlike QEMU,
  nothing is ever answered from a cache: any mismatch raises `ReplayDivergence` at once,
  and waiting at an event that nothing here can produce raises `ReplayStall` after a
  bounded number of main-loop iterations, so a broken replay names its first divergence
  instead of hanging.

A replay position is (index of the next unconsumed event, icount where the INSTRUCTION
count at that index starts). Recording has the same pair (events written, icount of the
last event), so a snapshot taken at the same point while recording or replaying carries
the same position, and a replay can start from either.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

from vm.clock import CheckpointKind
from vm.config import config_hash
from vm.nondet import NondetKind
from vm.replaylog import (
    AsyncKind,
    Event,
    EventKind,
    Log,
    LogCheckpoint,
    LogClock,
    LogError,
    LogHeader,
    LogWriter,
    ShutdownCause,
    check_header,
)
from vm.stop import StopReason

if TYPE_CHECKING:
    from vm.bh import BottomHalf
    from vm.machine import Machine

T = TypeVar("T")


class ReplayMode(enum.Enum):
    """Chosen when the machine is built. String values: persisted in scenarios."""

    NONE = "none"
    RECORD = "record"
    REPLAY = "replay"


# How many consumed events a replay error shows.
RECENT_EVENTS: Final = 8
# Main-loop iterations a replay may wait at one icount for an event that nothing consumes
# (letting host time pass and host work run each time) before it is declared stalled.
REPLAY_WAIT_MAX: Final = 64

CHECKPOINTS: Final = {
    CheckpointKind.CLOCK_VIRTUAL: LogCheckpoint.CLOCK_VIRTUAL,
    CheckpointKind.CLOCK_HOST: LogCheckpoint.CLOCK_HOST,
    CheckpointKind.INIT: LogCheckpoint.INIT,
    CheckpointKind.RESET: LogCheckpoint.RESET,
}
# Checkpoints that gate work (a replay skips the work until the log says) rather than
# mark a guest action that must happen exactly where the log says.
GATING_CHECKPOINTS: Final = frozenset(
    {CheckpointKind.CLOCK_VIRTUAL, CheckpointKind.CLOCK_HOST, CheckpointKind.ASYNC}
)
SHUTDOWN_CAUSES: Final = {
    StopReason.FINISHER_PASS: ShutdownCause.GUEST_PASS,
    StopReason.FINISHER_FAIL: ShutdownCause.GUEST_FAIL,
    StopReason.FINISHER_RESET: ShutdownCause.GUEST_RESET,
    StopReason.HOST_QUIT: ShutdownCause.HOST_QUIT,
}
# Host values that arrive as ASYNC events (at the async point), and their subkinds.
ASYNC_INPUTS: Final = {
    NondetKind.CHAR_READ: AsyncKind.CHAR_READ,
    NondetKind.NET: AsyncKind.NET,
    NondetKind.BLOCK: AsyncKind.BLOCK,
}

Position = tuple[int, int]  # (next event index, icount where its INSTRUCTION count starts)


class ReplayError(Exception):
    """A replay that cannot go on: where it stopped, what the log expected there, what the
    machine did instead, and the events consumed just before."""

    kind = "divergence"

    def __init__(
        self,
        message: str,
        *,
        icount: int,
        event_index: int,
        expected: Event | None,
        found: str,
        recent: tuple[tuple[int, int, Event], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.icount = icount
        self.event_index = event_index
        self.expected = expected
        self.found = found
        self.recent = recent

    def __str__(self) -> str:
        return (
            f"replay {self.kind} at icount {self.icount}, event {self.event_index}: {self.message}"
        )

    def render(self) -> str:
        """A multi-line report: the summary, then expected/found and the recent events."""
        lines = [
            str(self),
            f"  expected: {self.expected if self.expected is not None else '(end of log)'}",
            f"  found:    {self.found}",
        ]
        if self.recent:
            lines.append("  last events consumed:")
            lines += [f"    #{index} @{icount}: {event}" for index, icount, event in self.recent]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for traces and reports)."""
        return {
            "kind": self.kind,
            "message": self.message,
            "icount": self.icount,
            "event_index": self.event_index,
            "expected": str(self.expected) if self.expected is not None else None,
            "found": self.found,
            "recent": [[i, ic, str(e)] for i, ic, e in self.recent],
        }


class ReplayDivergence(ReplayError):
    """The machine did something the log does not say at this point."""


class ReplayStall(ReplayError):
    """The log waits for an event that nothing in the replaying machine produces."""

    kind = "stall"


class ReplayLogEnded(ReplayError):
    """The log ends (without END, or with the machine asking for more) before the run."""

    kind = "log-ended"


class Recorder:
    """Record mode: every hook lets its action happen and writes it to the log."""

    mode = ReplayMode.RECORD

    def __init__(self, machine: Machine, stream: IO[bytes], *, flush_each: bool = True) -> None:
        self.cpu = machine.cpu
        self.stream = stream
        header = LogHeader(config_hash(machine.config), machine.config.icount_shift)
        self.writer = LogWriter(stream, header, flush_each=flush_each)
        self.base_icount = machine.cpu.icount
        self.finished = False
        self._write(Event(EventKind.CHECKPOINT, (LogCheckpoint.INIT,)))

    def _write(self, event: Event) -> None:
        if self.finished:
            raise RuntimeError("the recording is finished; build a new machine to record again")
        icount = self.cpu.icount
        if icount != self.base_icount:
            # INSTRUCTION is written lazily, just before the next event: the count between.
            self.writer.write(Event(EventKind.INSTRUCTION, (icount - self.base_icount,)))
            self.base_icount = icount
        self.writer.write(event)

    def position(self) -> Position:
        return (self.writer.count, self.base_icount)

    def stats(self) -> tuple[int, int]:
        """(events, bytes) written so far, header included in the bytes."""
        return (self.writer.count, self.writer.bytes_written)

    # -- hooks ------------------------------------------------------------------------------

    def checkpoint(self, kind: CheckpointKind) -> bool:
        # The async point is implicit: the ASYNC events written behind it mark it.
        if kind is not CheckpointKind.ASYNC:
            self._write(Event(EventKind.CHECKPOINT, (CHECKPOINTS[kind],)))
        return True

    def host_timers_wanted(self, machine: Machine) -> bool:
        return machine.host_timers_due()

    def value(self, kind: NondetKind, channel: int, produce: Callable[[], T]) -> T:
        value = produce()
        if kind is NondetKind.CLOCK_HOST:
            self._write(Event(EventKind.CLOCK, (LogClock.HOST, value)))
        elif kind is NondetKind.RANDOM:
            self._write(Event(EventKind.RANDOM, (bytes(value),)))  # type: ignore[call-overload]
        elif kind is not NondetKind.CHAR_READ or value:
            # An empty character read delivers nothing; an empty packet is still a packet.
            self._write(Event(EventKind.ASYNC, (ASYNC_INPUTS[kind], channel, value)))
        return value

    def interrupt(self) -> bool:
        self._write(Event(EventKind.INTERRUPT))
        return True

    def exception(self) -> None:
        self._write(Event(EventKind.EXCEPTION))

    def shutdown(self, reason: StopReason) -> None:
        cause = SHUTDOWN_CAUSES.get(reason)
        if cause is not None:
            self._write(Event(EventKind.SHUTDOWN, (cause,)))

    def char_write(self, data: bytes) -> int:
        # Write-all (as QEMU's record forces): the backend takes every byte.
        self._write(Event(EventKind.CHAR_WRITE, (len(data), len(data))))
        return len(data)

    def bottom_half(self, bh: BottomHalf) -> None:
        subkind = AsyncKind.BH_ONESHOT if bh.oneshot else AsyncKind.BH
        self._write(Event(EventKind.ASYNC, (subkind, bh.scheduled_icount)))

    def finish(self) -> None:
        """Write the instructions run since the last event, then END."""
        if not self.finished:
            self._write(Event(EventKind.END))
            self.finished = True
            self.stream.flush()


class Replayer:
    """Replay mode: the log decides where each event happens and supplies host values."""

    mode = ReplayMode.REPLAY

    def __init__(self, machine: Machine, log: Log) -> None:
        check_header(
            log.header,
            config_hash=config_hash(machine.config),
            icount_shift=machine.config.icount_shift,
        )
        self.machine = machine
        self.cpu = machine.cpu
        self.log = log
        self.events = log.events
        self.recent: deque[tuple[int, int, Event]] = deque(maxlen=RECENT_EVENTS)
        self.consumed = 0  # events consumed by this replayer (progress, for stall checks)
        self._index_log()
        first = self.events[0] if self.events else None
        if first != Event(EventKind.CHECKPOINT, (LogCheckpoint.INIT,)):
            raise LogError(f"replay log does not start with CHECKPOINT INIT (it has {first})")
        self.seek(0, machine.cpu.icount)
        self._expect_checkpoint(CheckpointKind.INIT)

    def _index_log(self) -> None:
        """Two tables over the log, so a slice can run through every event consumed inside
        an instruction (clock reads, entropy, character writes, guest exceptions and
        shutdowns) and stop only at the next event the main loop gates on: `_offsets[j]`,
        the instructions in events[:j]; `_next_gate[j]`, the first gating event at or after
        j (len(events) if none)."""
        events = self.events
        offsets = [0] * (len(events) + 1)
        for j, event in enumerate(events):
            step = event.args[0] if event.kind is EventKind.INSTRUCTION else 0
            offsets[j + 1] = offsets[j] + step  # type: ignore[operator]
        next_gate = [len(events)] * (len(events) + 1)
        for j in range(len(events) - 1, -1, -1):
            next_gate[j] = j if _gates(events[j]) else next_gate[j + 1]
        self._offsets = offsets
        self._next_gate = next_gate

    # -- position ---------------------------------------------------------------------------

    def seek(self, index: int, base_icount: int) -> None:
        """Continue from replay position (index, base_icount), e.g. a snapshot's."""
        if not 0 <= index <= len(self.events):
            raise ValueError(
                f"replay position {index} is outside the log's {len(self.events)} events"
            )
        self.index = index
        self.base_icount = base_icount
        self._settle()

    def position(self) -> Position:
        return (self.index, self.base_icount)

    def position_problem(self, index: int, base_icount: int, icount: int) -> str | None:
        """Why position (index, base_icount) cannot be where a snapshot taken at `icount`
        stands in this log, or None if it can."""
        events = self.events
        if not 1 <= index <= len(events):
            return f"event {index} is not in the log's 1..{len(events)}"
        if base_icount > icount:
            return f"its events start at icount {base_icount}, after the snapshot's {icount}"
        due = base_icount
        i = index
        while i < len(events) and events[i].kind is EventKind.INSTRUCTION:
            due += events[i].args[0]  # type: ignore[operator]
            i += 1
        if due < icount:
            what = str(events[i]) if i < len(events) else "its end"
            return f"the log has {what} at icount {due}, before the snapshot's {icount}"
        return None

    def _settle(self) -> None:
        """Find the next non-INSTRUCTION event and the icount it is due at."""
        due = self.base_icount
        i = self.index
        events = self.events
        while i < len(events) and events[i].kind is EventKind.INSTRUCTION:
            due += events[i].args[0]  # type: ignore[operator]
            i += 1
        self.due = due
        self.pending_index = i
        self.pending: Event | None = events[i] if i < len(events) else None

    def _consume(self) -> Event:
        event = self.pending
        assert event is not None
        self.recent.append((self.pending_index, self.due, event))
        self.index = self.pending_index + 1
        self.base_icount = self.due
        self.consumed += 1
        self._settle()
        return event

    def _here(self, kind: EventKind) -> bool:
        pending = self.pending
        return pending is not None and pending.kind is kind and self.due == self.cpu.icount

    # -- errors -----------------------------------------------------------------------------

    def _expected(self) -> tuple[Event | None, int]:
        """The event the log is at: the INSTRUCTION still running, or the pending one."""
        icount = self.cpu.icount
        if icount >= self.due:
            return self.pending, self.pending_index
        # Name the INSTRUCTION record the icount lies in (the log may hold several in a
        # row, e.g. where an event between them was lost).
        index, end = self.index, self.base_icount
        while index < self.pending_index:
            end += self.events[index].args[0]  # type: ignore[operator]
            if end > icount:
                break
            index += 1
        return Event(EventKind.INSTRUCTION, (self.due - icount,)), index

    def error(self, cls: type[ReplayError], message: str, *, found: str) -> ReplayError:
        expected, index = self._expected()
        if self.cpu.icount < self.due:
            message += f" (the log runs {self.due - self.cpu.icount} more instructions first)"
        return cls(
            message,
            icount=self.cpu.icount,
            event_index=index,
            expected=expected,
            found=found,
            recent=tuple(self.recent),
        )

    def _mismatch(self, found: str) -> ReplayDivergence:
        expected, _ = self._expected()
        where = "here" if expected is self.pending else f"at icount {self.due}"
        what = str(self.pending) if self.pending is not None else "the end of the log"
        err = self.error(
            ReplayDivergence, f"the machine did {found}; the log has {what} {where}", found=found
        )
        assert isinstance(err, ReplayDivergence)
        return err

    def _expect(self, kind: EventKind, found: str) -> Event:
        if not self._here(kind):
            if self.pending is None and self.cpu.icount >= self.due:
                raise self.error(ReplayLogEnded, f"the log ends before {found}", found=found)
            raise self._mismatch(found)
        return self._consume()

    # -- what the main loop asks ----------------------------------------------------------------

    def cpu_limit(self) -> int:
        """The icount the vCPU may run to now: the next event the main loop gates on
        (interrupt, checkpoint, async event, END). Events consumed inside an instruction
        on the way are checked as they come (at exactly their icount), so slices need not
        end at them. A guest exception right before the gate may come from an instruction
        icount does not count: the budget then reaches one past the gate, and consuming
        the exception ends the slice."""
        icount = self.cpu.icount
        if icount > self.due:
            raise self._overdue()
        gate = self._next_gate[self.pending_index]
        gate_due = self.base_icount + self._offsets[gate] - self._offsets[self.index]
        self._gate_due = gate_due
        if gate == len(self.events):
            if icount >= gate_due:
                raise self.error(
                    ReplayLogEnded,
                    "the log ends without END: the recording was cut short",
                    found="the machine running on",
                )
            return gate_due
        if self._exception_before(gate):
            return gate_due + 1
        return gate_due

    def gate_due_now(self) -> bool:
        """Whether an event the main loop gates on is due at this very icount (never
        raises: the end of a log is not a question here)."""
        gate = self._next_gate[self.pending_index]
        if gate == len(self.events):
            return False
        return self.base_icount + self._offsets[gate] - self._offsets[self.index] <= self.cpu.icount

    def _exception_before(self, gate: int) -> bool:
        """Whether an EXCEPTION shares the gate's icount (no INSTRUCTION between them)."""
        j = gate - 1
        while j >= self.pending_index and self.events[j].kind is not EventKind.INSTRUCTION:
            if self.events[j].kind is EventKind.EXCEPTION:
                return True
            j -= 1
        return False

    def _overdue(self) -> ReplayDivergence:
        """The vCPU ran past the pending event's icount without the machine doing it."""
        return self._mismatch(f"instructions up to icount {self.cpu.icount} without it")

    def check_overdue(self) -> None:
        """At an instruction boundary where the replay waits: an event that the instruction
        just executed should have produced (a clock read, a character write, ...) can no
        longer come; raise rather than wait for it."""
        pending = self.pending
        if pending is not None and not _gates(pending) and self.due <= self.cpu.icount:
            raise self._overdue()

    def at_end(self) -> bool:
        """The log's END is due now: the replay has reached where the recording ended."""
        return self._here(EventKind.END)

    def host_quit(self) -> bool:
        """The recording's host asked to quit here: consume it (the replay stops too)."""
        pending = self.pending
        if self._here(EventKind.SHUTDOWN) and pending.args[0] is ShutdownCause.HOST_QUIT:  # type: ignore[union-attr]
            self._consume()
            return True
        return False

    def waiting_for(self) -> str:
        return str(self.pending) if self.pending is not None else "the end of the log"

    # -- hooks ------------------------------------------------------------------------------

    def checkpoint(self, kind: CheckpointKind) -> bool:
        if kind is CheckpointKind.ASYNC:
            return self._here(EventKind.ASYNC)
        logged = CHECKPOINTS[kind]
        here = self._here(EventKind.CHECKPOINT) and self.pending.args[0] is logged  # type: ignore[union-attr]
        if here:
            self._consume()
            return True
        if kind in GATING_CHECKPOINTS:
            return False  # the work waits: the log says where it runs
        raise self._mismatch(f"CHECKPOINT {logged.name}")

    def _expect_checkpoint(self, kind: CheckpointKind) -> None:
        self.checkpoint(kind)

    def host_timers_wanted(self, machine: Machine) -> bool:
        # Wherever a HOST timer is armed, ask: the log says where the checkpoints were.
        return machine.host_timers_armed()

    def value(self, kind: NondetKind, channel: int, produce: Callable[[], T]) -> T:
        del produce  # live host input is dropped in replay
        if kind is NondetKind.CLOCK_HOST:
            event = self._expect(EventKind.CLOCK, "a HOST clock read")
            if event.args[0] is not LogClock.HOST:
                raise self._mismatch("a HOST clock read")
            return event.args[1]  # type: ignore[return-value]
        if kind is NondetKind.RANDOM:
            return self._expect(EventKind.RANDOM, "an entropy read").args[0]  # type: ignore[return-value]
        # Char, packet and block input come from the log at the async point (`async_point`),
        # never from a live backend.
        raise self._mismatch(f"a live {kind.value} delivery on backend {channel}")

    def interrupt(self) -> bool:
        """An interrupt is pending: take it only if the log says so here."""
        if self._here(EventKind.INTERRUPT):
            self._consume()
            return True
        return False

    def exception(self) -> None:
        self._expect(EventKind.EXCEPTION, "a guest exception")
        if self.cpu.icount == getattr(self, "_gate_due", -1):
            # The slice was allowed one instruction past the gate: end it here.
            self.machine.kick()

    def shutdown(self, reason: StopReason) -> None:
        cause = SHUTDOWN_CAUSES.get(reason)
        if cause is None:
            return
        found = f"SHUTDOWN {cause.name}"
        event = self._expect(EventKind.SHUTDOWN, found)
        if event.args[0] is not cause:
            raise self._mismatch(found)

    def char_write(self, data: bytes) -> int:
        found = f"a character write of {len(data)} bytes"
        event = self._expect(EventKind.CHAR_WRITE, found)
        if event.args[1] != len(data):
            raise self._mismatch(found)
        return event.args[1]  # type: ignore[return-value]

    def bottom_half(self, bh: BottomHalf) -> None:
        del bh  # replay runs bottom halves from `async_point` alone

    def finish(self) -> None:
        pass

    def async_point(self, machine: Machine) -> bool:
        """Run the ASYNC events due now, in log order. A bottom half or block request the
        log names but the machine has not queued yet leaves the rest waiting. True if any
        ran."""
        ran = False
        while self._here(EventKind.ASYNC):
            event = self.pending
            assert event is not None
            handler = _ASYNC_HANDLERS[event.args[0]]  # type: ignore[index]
            if not handler(self, machine, event):
                break
            ran = True
        return ran

    def _run_bh(self, machine: Machine, event: Event) -> bool:
        oneshot = event.args[0] is AsyncKind.BH_ONESHOT
        queue = machine.bottom_halves.replay_queue
        for bh in queue:
            if bh.scheduled_icount == event.args[1] and bh.oneshot == oneshot:
                queue.remove(bh)
                bh.scheduled = False
                self._consume()
                machine.bottom_halves.run_one(bh)
                return True
        return False

    def _char_read(self, machine: Machine, event: Event) -> bool:
        _, index, data = event.args
        backend = machine.backend_by_index(index)  # type: ignore[arg-type]
        receive = getattr(backend, "receive", None)
        if backend is None or backend.kind is not NondetKind.CHAR_READ or receive is None:
            raise self._mismatch(f"no connected character backend {index}")
        if backend.can_receive() < len(data):  # type: ignore[union-attr, arg-type]
            raise self._mismatch(f"character backend {index} unable to take {len(data)} bytes")  # type: ignore[arg-type]
        self._consume()
        receive(data)
        return True

    def _net(self, machine: Machine, event: Event) -> bool:
        _, index, packet = event.args
        backend = machine.backend_by_index(index)  # type: ignore[arg-type]
        receive = getattr(backend, "receive", None)
        if backend is None or backend.kind is not NondetKind.NET or receive is None:
            raise self._mismatch(f"no connected network backend {index}")
        if backend.can_receive() <= 0:  # type: ignore[union-attr]
            raise self._mismatch(f"network backend {index} unable to take a packet")
        self._consume()
        receive(packet)
        return True

    def _block(self, machine: Machine, event: Event) -> bool:
        _, index, request_id = event.args
        backend = machine.backend_by_index(index)  # type: ignore[arg-type]
        complete = getattr(backend, "complete", None)
        if backend is None or backend.kind is not NondetKind.BLOCK or complete is None:
            raise self._mismatch(f"no connected block backend {index}")
        # The device completes only a request it has in flight, changing nothing otherwise:
        # one the guest has not submitted yet waits (a stall if it never is). Completion
        # reads no host value, so consuming the event after it keeps the log's order.
        if not complete(request_id):
            return False
        self._consume()
        backend.forget(request_id)  # type: ignore[union-attr]  # the live completion is dropped
        return True


# Events the main loop waits for at an instruction boundary; the others are consumed inside
# an instruction (a device access, a trap, the finisher's store).
_GATING_KINDS: Final = frozenset(
    {EventKind.INTERRUPT, EventKind.ASYNC, EventKind.CHECKPOINT, EventKind.END}
)


def _gates(event: Event) -> bool:
    if event.kind is EventKind.SHUTDOWN:
        return event.args[0] is ShutdownCause.HOST_QUIT  # the host's own, at a boundary
    return event.kind in _GATING_KINDS


_ASYNC_HANDLERS: Final[dict[AsyncKind, Callable[[Replayer, Machine, Event], bool]]] = {
    AsyncKind.BH: Replayer._run_bh,
    AsyncKind.BH_ONESHOT: Replayer._run_bh,
    AsyncKind.CHAR_READ: Replayer._char_read,
    AsyncKind.NET: Replayer._net,
    AsyncKind.BLOCK: Replayer._block,
}

Engine = Recorder | Replayer
