"""Runs that stop at exact icounts: periodic snapshots, and seek (QEMU's replay-seek).

A `Session` drives one machine to icounts (`run_to`); with `snapshot_every=K` it takes a
snapshot at every multiple of K it passes. `seek(icount)` loads the snapshot with the
largest icount not above the target (when the target lies behind the machine, or a
snapshot lies between the machine and the target) and replays forward to a break there,
so a seek costs one loadvm and at most K instructions wherever it goes.

Every stop lands on the pinned sample point: `Machine.run` returns only after the work due
at that icount has run and any interrupt due there has been entered, so a digest taken
after `run_to(k)` and after `seek(k)` compare.

A snapshot point where savevm is refused (a bottom half is queued: QEMU's "Try once more
later") is retried after each further instruction, up to `SNAPSHOT_RETRIES`, in every mode
alike; the snapshot then carries the icount it was really taken at.
"""

from __future__ import annotations

import bisect
from typing import Final

from vm.machine import Machine
from vm.replay import ReplayMode
from vm.snapshot import SnapshotError, loadvm, read_header, savevm
from vm.stop import RunResult, StopReason

SNAPSHOT_RETRIES: Final = 1_000
# Stops after which a run goes on to its target: a guest reset restarts the guest.
CONTINUE_AFTER: Final = frozenset({StopReason.BUDGET, StopReason.FINISHER_RESET})


class SeekError(ValueError):
    """A seek that cannot be done (no snapshot at or before the target, not replaying)."""


class Session:
    """One machine run to exact icounts, with optional periodic snapshots and seek."""

    def __init__(
        self,
        machine: Machine,
        *,
        snapshot_every: int | None = None,
        single_step: bool = False,
        reverse_sections: bool = False,
    ) -> None:
        if snapshot_every is not None and snapshot_every <= 0:
            raise ValueError(f"snapshot_every must be positive, got {snapshot_every}")
        self.machine = machine
        self.snapshot_every = snapshot_every
        self.single_step = single_step  # interpret every instruction on its own (same result)
        # Seeks load device sections in the reverse order: the same machine, unless some
        # post_load reaches into another device (rule 5).
        self.reverse_sections = reverse_sections
        self.snapshot_icounts: list[int] = []  # sorted
        self.snapshots: dict[int, bytes] = {}
        self._next_snapshot = machine.cpu.icount if snapshot_every else None
        self._retries = 0

    # -- running ----------------------------------------------------------------------------

    def run_to(self, icount: int) -> RunResult:
        """Run until `icount` (or an earlier stop: finisher, idle, end of the log); a guest
        reset on the way is run through. Takes the periodic snapshots passed."""
        machine = self.machine
        start = machine.cpu.icount
        if icount < start:
            raise ValueError(f"cannot run back from icount {start} to {icount}: seek instead")
        result = RunResult(StopReason.BUDGET, 0)
        while True:
            self._maybe_snapshot()
            here = machine.cpu.icount
            if here >= icount and result.reason is StopReason.BUDGET:
                break
            step_to = icount if self._next_snapshot is None else min(icount, self._next_snapshot)
            result = machine.run(max(0, step_to - here), single_step=self.single_step)
            if result.reason not in CONTINUE_AFTER:
                break
            if result.reason is StopReason.FINISHER_RESET:
                result = RunResult(StopReason.BUDGET, 0)
        return RunResult(result.reason, machine.cpu.icount - start, result.finisher_code)

    def _maybe_snapshot(self) -> None:
        """Take the periodic snapshot due here (or retry a refused one)."""
        due = self._next_snapshot
        icount = self.machine.cpu.icount
        if due is None or icount < due:
            return
        if icount in self.snapshots or self.take_snapshot() is not None:
            self._retries = 0
            self._next_snapshot = self._after(icount)
            return
        # Refused: try again after one more instruction, for a while.
        self._retries += 1
        self._next_snapshot = (
            icount + 1 if self._retries <= SNAPSHOT_RETRIES else self._after(icount)
        )

    def _after(self, icount: int) -> int:
        every = self.snapshot_every or 1
        return (icount // every + 1) * every

    def take_snapshot(self) -> bytes | None:
        """savevm now and keep it for seeks; None if refused now (a bottom half is queued)."""
        machine = self.machine
        if machine.bottom_halves.plain_queue or machine.bottom_halves.replay_queue:
            return None
        data = savevm(machine)
        icount = machine.cpu.icount
        if icount not in self.snapshots:
            bisect.insort(self.snapshot_icounts, icount)
        self.snapshots[icount] = data
        return data

    def add_snapshot(self, data: bytes) -> None:
        """Keep a snapshot taken elsewhere (e.g. while recording) for seeks."""
        icount = read_header(data).icount
        if icount not in self.snapshots:
            bisect.insort(self.snapshot_icounts, icount)
        self.snapshots[icount] = data

    # -- seek -------------------------------------------------------------------------------

    def seek(self, icount: int) -> RunResult:
        """Stop the replay exactly at `icount`, backward or forward: load the nearest
        snapshot at or before it when that saves work (or when going back), then replay
        forward to it."""
        machine = self.machine
        if machine.mode is not ReplayMode.REPLAY:
            raise SeekError("seek needs a replaying machine: only a replay reaches the same state")
        current = machine.cpu.icount
        index = bisect.bisect_right(self.snapshot_icounts, icount) - 1
        if index < 0:
            if icount < current:
                raise SeekError(f"cannot seek back to icount {icount}: no snapshot at or before it")
        else:
            best = self.snapshot_icounts[index]
            if icount < current or best > current:
                try:
                    loadvm(machine, self.snapshots[best], reverse_sections=self.reverse_sections)
                except SnapshotError as exc:
                    raise SeekError(f"cannot seek through the snapshot at {best}: {exc}") from exc
                self._next_snapshot = self._after(best) if self.snapshot_every else None
        return self.run_to(icount)
