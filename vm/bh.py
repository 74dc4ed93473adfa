"""Bottom halves: callbacks deferred to the main loop.

A plain bottom half runs on the main loop's host side at its next iteration, a point the
host chooses; it must not change guest state (replay rule 2). A replay-scheduled one runs at
the next async point on the guest side, which part 3 logs as an ASYNC event whose id is the
icount when it was scheduled, so in replay it runs where the log says. Both may be reusable
(scheduled again and again) or one-shot.
"""

from __future__ import annotations

from collections.abc import Callable


class BottomHalf:
    __slots__ = ("callback", "oneshot", "owner", "replay", "scheduled", "scheduled_icount")

    def __init__(
        self, owner: BottomHalves, callback: Callable[[], None], *, replay: bool, oneshot: bool
    ) -> None:
        self.owner = owner
        self.callback = callback
        self.replay = replay
        self.oneshot = oneshot
        self.scheduled = False
        self.scheduled_icount = -1  # the ASYNC event id part 3 logs

    def schedule(self) -> None:
        """Run once at the next opportunity; scheduling again before then is a no-op."""
        if not self.scheduled:
            self.scheduled = True
            self.scheduled_icount = self.owner.icount()
            (self.owner.replay_queue if self.replay else self.owner.plain_queue).append(self)

    def cancel(self) -> None:
        if self.scheduled:
            self.scheduled = False
            queue = self.owner.replay_queue if self.replay else self.owner.plain_queue
            queue.remove(self)


class BottomHalves:
    """The machine's two queues, each run in scheduling order."""

    def __init__(self, icount: Callable[[], int]) -> None:
        self.icount = icount
        self.plain_queue: list[BottomHalf] = []
        self.replay_queue: list[BottomHalf] = []
        # Runs each bottom half instead of calling it directly (vm.activity watches).
        self.on_run: Callable[[BottomHalf], None] | None = None

    def new(self, callback: Callable[[], None], *, replay: bool) -> BottomHalf:
        return BottomHalf(self, callback, replay=replay, oneshot=False)

    def schedule_oneshot(self, callback: Callable[[], None], *, replay: bool) -> BottomHalf:
        bh = BottomHalf(self, callback, replay=replay, oneshot=True)
        bh.schedule()
        return bh

    def run_plain(self) -> bool:
        return self._run(self.plain_queue)

    def run_replay(self, *, announce: Callable[[BottomHalf], None] | None = None) -> bool:
        """Run the replay-scheduled queue; `announce` sees each just before it runs (the
        recorder logs it as an ASYNC event there)."""
        return self._run(self.replay_queue, announce)

    def _run(
        self, queue: list[BottomHalf], announce: Callable[[BottomHalf], None] | None = None
    ) -> bool:
        """Run what is queued now; what these callbacks schedule waits for the next round."""
        batch = list(queue)
        queue.clear()
        for bh in batch:
            bh.scheduled = False
            if announce is not None:
                announce(bh)
            self.run_one(bh)
        return bool(batch)

    def run_one(self, bh: BottomHalf) -> None:
        if self.on_run is None:
            bh.callback()
        else:
            self.on_run(bh)
