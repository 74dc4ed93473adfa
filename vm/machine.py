"""The virt32 machine: a hart, the bus, devices and the run loop that ties them to icount."""

from __future__ import annotations

import builtins
import functools
import io
from collections.abc import Callable, Iterable
from typing import IO

from vm.activity import Activity, ActivityKind, ActivityLog, Side, callback_owner
from vm.backends import Backend, BlockBackend, CharBackend, NetBackend, Stimulus
from vm.bh import BottomHalf, BottomHalves
from vm.boot import ROM_BASE, ROM_SIZE, reset_vector
from vm.clock import CheckpointKind, ClockKind, HostTime, Timer, TimerList, VirtualClock
from vm.config import MachineConfig
from vm.cpu import CpuState, GuestTrap
from vm.csr import Cause
from vm.devices import Device, IrqLine
from vm.devices.registry import device_class
from vm.hostmodel import HostModel, HostProfile
from vm.interp import HOT_BLOCK_ENTRIES, StepFn, build_step
from vm.memory import PAGE_SHIFT, RAM_BASE, Bus
from vm.nondet import Nondet, NondetKind
from vm.planted import install_machine_bugs
from vm.replay import (
    REPLAY_WAIT_MAX,
    Engine,
    Recorder,
    Replayer,
    ReplayMode,
    ReplayStall,
)
from vm.replaylog import Log, read_log
from vm.semantics import div_signed, rem_signed
from vm.stop import RunResult, StopReason
from vm.translate import bind, compile_region, discover_region

RegionFn = Callable[[int], int]
# A region runs at most this many instructions per call, so its countdown stays a small int.
_SLICE_MAX = 1 << 28
# A hart asleep in WFI whose wake-ups (timers that fire without raising an enabled
# interrupt) keep coming with no instruction in between is idle forever after this many.
IDLE_WAKEUPS_MAX = 10_000
_NEVER = 1 << 62
# Slices in a row that run no instruction (a timer re-armed in the past, forever) before the
# run stops with NO_PROGRESS instead of spinning.
STALLED_SLICES_MAX = 100
# A deadline at INT64_MAX ns is QEMU's "never" (the CLINT clamps far mtimecmp values to it):
# no slice ends there and an idle hart does not warp to it.
NEVER_NS = (1 << 63) - 1


def _nothing() -> None:
    pass


class Machine:
    """One RV32 hart on QEMU's `virt` memory map, in icount mode.

    Invariant: after `run` returns, `cpu.pc` is the next instruction to execute and
    `cpu.icount` counts every instruction executed since reset, as QEMU's -icount does.

    `mode` is chosen here, once (vm.replay): NONE, RECORD (the log is written to
    `record_to`, an in-memory buffer by default, see `recorded_log`) or REPLAY (of
    `replay_log`, a `vm.replaylog.Log` or its bytes; its header must match this
    configuration). The host model runs with `host_seed` in every mode; in replay the
    host's input never reaches the guest.
    """

    def __init__(
        self,
        config: MachineConfig | None = None,
        *,
        host_seed: int = 0,
        host_profile: HostProfile | None = None,
        stimulus: Iterable[Stimulus] = (),
        hot_block_entries: int = HOT_BLOCK_ENTRIES,
        mode: ReplayMode = ReplayMode.NONE,
        replay_log: Log | bytes | None = None,
        record_to: IO[bytes] | None = None,
    ) -> None:
        self.config = config or MachineConfig()
        # Everything the host decides (slice quanta and durations, its clock, its stimulus).
        self.host = HostModel(host_seed, profile=host_profile)
        self.nondet = Nondet()
        self.vclock = VirtualClock(self.config.icount_shift)
        self.host_time = HostTime(self.host)
        self.timer_lists = {kind: TimerList(kind) for kind in ClockKind}
        self.bottom_halves = BottomHalves(lambda: self.cpu.icount)
        self._slices = 0  # index of the host model's next slice decision
        # Host input, by REALTIME of arrival; the backends it arrives into, by name.
        self.stimulus: tuple[Stimulus, ...] = tuple(sorted(stimulus))
        self._next_stimulus = 0
        self.backends: dict[str, Backend] = {}
        # How often the interpreter enters a block before it is translated (1 = translate
        # at once; tests use that to exercise the translator on short programs).
        self.hot_block_entries = hot_block_entries
        self.cpu = CpuState()
        self.bus = Bus(ram_size=self.config.ram_size, rom_base=ROM_BASE, rom_size=ROM_SIZE)
        self.console = bytearray()
        self.console_sink: Callable[[bytes], None] | None = None
        self.breakpoints: frozenset[int] = frozenset()
        self.finisher_code: int | None = None
        self.boot_image: list[tuple[int, bytes]] = []  # what a system reset copies in again
        self._stop: StopReason | None = None
        self._virtual_due_icount = 0
        self._regions: dict[int, RegionFn] = {}
        self._steps: dict[int, tuple[StepFn, bool]] = {}
        self._heat: dict[int, int] = {}  # block entries seen by the interpreter, per pc
        self._page_entries: dict[int, set[int]] = {}
        self.bus.on_code_write = self._invalidate_page
        self.devices: dict[str, Device] = {}
        for spec in self.config.devices:
            device = device_class(spec.kind, planted=self.config.planted_bugs)(self, spec)
            self.bus.map_device(spec.name, spec.base, device.size, device)
            self.devices[spec.name] = device
        self.activity: ActivityLog | None = None  # see trace_activity
        # Observation points (see `observe`): pending icounts, largest first.
        self._observe_at: list[int] = []
        self._next_observe = _NEVER
        self._observer: Callable[[Machine], None] | None = None
        self.stopped = False  # between stop() and cont()
        self._one_instruction = False  # step(): one instruction, counted or not
        # The icount where the last run returned, its boundary work done (or a snapshot's).
        self._settled_icount = -1
        self._stepped = False
        self._stops = 0  # index of the host model's next stop duration
        self._waits = 0  # replay: main-loop iterations spent waiting at one log position
        self._wait_mark = (-1, -1)
        self.mode = mode
        self.rr: Engine | None = self._engine(mode, replay_log, record_to)
        self.replayer = self.rr if isinstance(self.rr, Replayer) else None
        self.nondet.port = self.rr
        # The hooks the vCPU calls, bound once: without record/replay they are the CPU's own.
        self._take_interrupt: Callable[[], bool] = (
            self.cpu.take_interrupt if self.rr is None else self._logged_interrupt
        )
        self._env = self._region_globals()
        if self.config.planted_bugs:  # deliberately broken variants (vm/planted.py)
            install_machine_bugs(self)

    def _engine(
        self, mode: ReplayMode, replay_log: Log | bytes | None, record_to: IO[bytes] | None
    ) -> Engine | None:
        if mode is not ReplayMode.REPLAY and replay_log is not None:
            raise ValueError(f"a replay log was given to a machine in mode {mode.value}")
        if mode is not ReplayMode.RECORD and record_to is not None:
            raise ValueError(f"a record stream was given to a machine in mode {mode.value}")
        if mode is ReplayMode.RECORD:
            return Recorder(self, record_to if record_to is not None else io.BytesIO())
        if mode is ReplayMode.REPLAY:
            if replay_log is None:
                raise ValueError("replay mode needs a replay_log")
            log = replay_log if isinstance(replay_log, Log) else read_log(replay_log)
            return Replayer(self, log)
        return None

    def _region_globals(self) -> dict[str, object]:
        cpu, bus = self.cpu, self.bus
        return {
            "__builtins__": builtins,
            "X": cpu.x,
            "S": cpu,
            "RB": bus.ram,
            "HW": bus.ram_halves,
            "WD": bus.ram_words,
            "RF": bus.read_fast,
            "WF": bus.write_fast,
            "LOAD": bus.read,
            "STORE": bus.write,
            "CSRX": self._csr_instruction,
            "WFI": self._wfi,
            "DIV": div_signed,
            "REM": rem_signed,
            "GuestTrap": GuestTrap,
            "ENTER": cpu.enter_exception if self.rr is None else self._logged_exception,
        }

    # -- boot -----------------------------------------------------------------------------

    def load_image(self, addr: int, data: bytes) -> None:
        """Put part of the program into RAM, as QEMU's `-kernel` loader does; like QEMU's
        ROM blobs, the image is copied in again on every system reset."""
        self.bus.write_bytes(addr, data)
        self.boot_image.append((addr, bytes(data)))

    def boot(self, entry: int) -> None:
        """Reset the hart to QEMU's reset vector at 0x1000, which jumps to `entry`."""
        ram_end = RAM_BASE + self.config.ram_size
        rom = reset_vector(entry=entry, ram_end=ram_end)
        self.bus.rom[: len(rom)] = rom
        self.cpu.pc = ROM_BASE

    def system_reset(self) -> None:
        """A guest reset request (the finisher's 0x7777), as QEMU 7.2 performs it: every
        device resets, the program image is copied into RAM again, and the hart restarts at
        the reset vector with MIE and mcause cleared. The rest of RAM, the GPRs and the other
        CSRs keep their values, and icount and virtual time go on (checked on the reference
        QEMU)."""
        self.checkpoint(CheckpointKind.RESET)
        for device in self.devices.values():
            device.reset()
        for addr, data in self.boot_image:
            self.bus.write_bytes(addr, data)
        self.cpu.reset()
        self.cpu.pc = ROM_BASE

    # -- what devices see (the one place the icount reaches a device) -------------------

    def io_icount(self) -> int:
        """The icount a device observes: it includes the accessing instruction (pinned)."""
        return self.cpu.icount

    def audit_io_icount(self) -> list[tuple[int, int]]:
        """Check the machine's own rule from now on: every icount handed to a device is
        the accessing instruction's exact count. Returns the list the (exact, observed)
        pairs of the first violations are appended to as the run goes."""
        violations: list[tuple[int, int]] = []
        handed = self.io_icount

        def audited() -> int:
            value = handed()
            if value != self.cpu.icount and len(violations) < 64:
                violations.append((self.cpu.icount, value))
            return value

        self.io_icount = audited  # type: ignore[method-assign]
        return violations

    def virtual_ns(self) -> int:
        """VIRTUAL clock now, as the accessing instruction sees it."""
        return self.vclock.now_ns(self.io_icount())

    def read_host_clock(self) -> int:
        """The HOST clock as the guest may see it: through the nondeterminism choke point."""
        return self.nondet.value(NondetKind.CLOCK_HOST, self.host_time.host_ns)

    def new_timer(
        self, clock: ClockKind, callback: Callable[[], None], *, external: bool = False
    ) -> Timer:
        return self.timer_lists[clock].new(callback, external=external)

    def new_bottom_half(self, callback: Callable[[], None], *, replay: bool) -> BottomHalf:
        return self.bottom_halves.new(callback, replay=replay)

    def char_backend(self, name: str) -> CharBackend:
        """The character backend named `name` (stimulus channel), created on first use."""
        return self._backend(name, CharBackend)  # type: ignore[return-value]

    def net_backend(self, name: str) -> NetBackend:
        """The network backend named `name` (stimulus channel), created on first use."""
        return self._backend(name, NetBackend)  # type: ignore[return-value]

    def block_backend(self, name: str) -> BlockBackend:
        """The block backend named `name` (a disk's host end), created on first use.

        Block completions need no hook of their own in the main loop: the backend's
        REALTIME timer runs with the host-side work (and `_idle` lets host time pass to
        its deadline), and the guest side's async point delivers what completed through
        `deliver`, as it does char and net input."""
        backend = self.backends.get(name)
        if backend is None:
            backend = self.backends[name] = BlockBackend(
                name,
                len(self.backends),
                host=self.host,
                host_time=self.host_time,
                timers=self.timer_lists[ClockKind.REALTIME],
            )
        elif not isinstance(backend, BlockBackend):
            raise ValueError(f"backend {name!r} is a {type(backend).__name__}")
        return backend

    def _backend(self, name: str, kind: type[CharBackend] | type[NetBackend]) -> Backend:
        backend = self.backends.get(name)
        if backend is None:
            backend = self.backends[name] = kind(name, len(self.backends))
        elif not isinstance(backend, kind):
            raise ValueError(f"backend {name!r} is a {type(backend).__name__}")
        return backend

    def set_cpu_irq(self, bit: int, *, level: bool) -> None:
        self.cpu.set_mip_bit(bit, level=level)

    def irq_line(self, source: int) -> IrqLine:
        """A line into interrupt source `source` of the machine's interrupt controller
        (the first device with a `set_input` method, e.g. the PLIC); with none configured
        the line goes nowhere, as an unconnected pin would."""

        def deliver(level: bool) -> None:  # noqa: FBT001
            for device in self.devices.values():
                set_input = getattr(device, "set_input", None)
                if set_input is not None:
                    set_input(source, level)
                    return

        return IrqLine(deliver)

    def request_quit(self) -> None:
        """The host asks the VM to quit (QEMU's `quit`, a signal): the run stops at the
        next instruction boundary, where a recording logs SHUTDOWN HOST_QUIT, at which a
        replay of it stops too. Safe to call from a signal handler."""
        self._stop = StopReason.HOST_QUIT

    def request_stop(self, reason: StopReason, *, code: int | None = None) -> None:
        if self.rr is not None and reason is not StopReason.HOST_QUIT:
            self.rr.shutdown(reason)  # a guest shutdown request is a SHUTDOWN event
        self._stop = reason
        if code is not None:
            self.finisher_code = code

    def console_write(self, data: bytes) -> None:
        if self.rr is not None:
            # Every mode writes all of it (QEMU's record forces write-all); replay writes
            # what the log says the backend accepted.
            data = data[: self.rr.char_write(data)]
        self.console += data
        if self.console_sink is not None:
            self.console_sink(data)

    def console_output(self) -> bytes:
        return bytes(self.console)

    def new_virtual_timer(self, callback: Callable[[], None]) -> Timer:
        return self.new_timer(ClockKind.VIRTUAL, callback)

    def notify_runstate(self, *, running: bool) -> None:
        """Tell every device that the VM stops or continues (part 3's stop/cont)."""
        for device in self.devices.values():
            device.runstate_changed(running=running)

    def checkpoint(self, kind: CheckpointKind) -> bool:
        """A point where QEMU's replay takes a checkpoint; True lets the work behind it
        run (always, but in replay, where only the log decides)."""
        return True if self.rr is None else self.rr.checkpoint(kind)

    # -- record/replay ----------------------------------------------------------------------

    def recorded_log(self) -> bytes:
        """Finish the recording (the instructions since the last event, then END) and
        return the log's bytes, when it was recorded in memory."""
        if not isinstance(self.rr, Recorder):
            raise ValueError(f"the machine is in mode {self.mode.value}, not record")
        self.rr.finish()
        stream = self.rr.stream
        if not isinstance(stream, io.BytesIO):
            raise ValueError("the log was recorded to a stream of the caller's")
        return stream.getvalue()

    def recording_stats(self) -> tuple[int, int]:
        """Record mode: (events, bytes) written to the log so far."""
        if not isinstance(self.rr, Recorder):
            raise ValueError(f"the machine is in mode {self.mode.value}, not record")
        return self.rr.stats()

    def finish_recording(self) -> None:
        """Write END: the replay of this log ends at the current icount."""
        if isinstance(self.rr, Recorder):
            self.rr.finish()

    def replay_at_end(self) -> bool:
        """Replay mode: the log's END is due at this icount (the replay matched to the end)."""
        return self.replayer is not None and self.replayer.at_end()

    def backend_by_index(self, index: int) -> Backend | None:
        """The backend created `index`-th (the index the log names it by)."""
        for backend in self.backends.values():
            if backend.index == index:
                return backend
        return None

    def kick(self) -> None:
        """End the current CPU slice at the next instruction boundary (the slice loop
        returns whenever the virtual timer list changed; that flag only costs a
        recomputation of the next deadline)."""
        self.timer_lists[ClockKind.VIRTUAL].changed = True

    def _logged_interrupt(self) -> bool:
        assert self.rr is not None
        if not self.rr.interrupt():
            return False  # replay: the log says the interrupt is taken later; it stays pending
        return self.cpu.take_interrupt()

    def _logged_exception(self, cause: int, tval: int, pc: int) -> int:
        assert self.rr is not None
        self.rr.exception()
        return self.cpu.enter_exception(cause, tval, pc)

    # -- watching a run without changing it ---------------------------------------------------

    def observe(self, icounts: Iterable[int], callback: Callable[[Machine], None]) -> None:
        """Call `callback(machine)` right after the instruction that brings the icount to
        each of `icounts` retires, before anything else happens at that icount (no
        interrupt entered, no timer or host work run). The CPU's slice does not end
        there, so the run is exactly the one it would be unobserved: divergence
        localisation watches a recording this way without changing what it records. An
        icount the machine starts at is observed before the first instruction."""
        points = sorted({k for k in icounts if k >= self.cpu.icount}, reverse=True)
        self._observe_at = points
        self._observer = callback
        self._next_observe = points[-1] if points else _NEVER

    def _observe(self) -> None:
        icount = self.cpu.icount
        points = self._observe_at
        while points and points[-1] <= icount:
            points.pop()
            if self._observer is not None:
                self._observer(self)
        self._next_observe = points[-1] if points else _NEVER

    def trace_activity(self, log: ActivityLog | None = None) -> ActivityLog:
        """Start logging what runs around the guest (timers, bottom halves, host input,
        stop/cont) into `log` (a new bounded one by default), and return it."""
        self.activity = log if log is not None else ActivityLog()
        for timers in self.timer_lists.values():
            timers.on_fire = self._note_timer
        self.bottom_halves.on_run = self._note_bottom_half
        return self.activity

    def _note(
        self,
        kind: ActivityKind,
        side: Side,
        owner: str,
        detail: str,
        run: Callable[[], None],
    ) -> None:
        """Run one piece of activity and log it; on the host side (and for stop/cont),
        also which state components it changed, which no rule allows."""
        if self.activity is None:
            run()
            return
        icount, realtime = self.cpu.icount, self.host_time.realtime_ns
        changed: tuple[str, ...] = ()
        if side is Side.HOST:
            from vm.digest import component_digests  # vm.digest imports this module

            before = component_digests(self)
            run()
            after = component_digests(self)
            changed = tuple(
                sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            )
        else:
            run()
        self.activity.add(Activity(icount, realtime, kind, side, owner, detail, changed))

    def _note_timer(self, timer: Timer) -> None:
        # VIRTUAL (non-EXTERNAL) and HOST timers run on the guest side behind their
        # checkpoints; REALTIME and EXTERNAL ones on the host side, when the host gets to them.
        guest = timer.clock is ClockKind.HOST or (
            timer.clock is ClockKind.VIRTUAL and not timer.external
        )
        detail = f"{timer.clock.value}{' EXTERNAL' if timer.external else ''} timer"
        side = Side.GUEST if guest else Side.HOST
        self._note(ActivityKind.TIMER, side, callback_owner(timer.callback), detail, timer.callback)

    def _note_bottom_half(self, bh: BottomHalf) -> None:
        side = Side.GUEST if bh.replay else Side.HOST
        detail = "replay-scheduled" if bh.replay else "plain"
        self._note(ActivityKind.BOTTOM_HALF, side, callback_owner(bh.callback), detail, bh.callback)

    # -- stop and continue ------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the VM at this instruction boundary (as QEMU's `stop`): devices are told;
        `run` refuses until `cont`. Guest state does not change (replay rule 6)."""
        if not self.stopped:
            self.stopped = True
            self._note(ActivityKind.RUNSTATE, Side.HOST, "machine", "stop", self._notify_stop)

    def pass_host_time(self, ns: int | None = None) -> None:
        """While stopped: `ns` of host time pass (by default as long as the host model
        says this stop lasts). Host work due meanwhile runs, in order: stimulus arrives,
        REALTIME timers fire, plain bottom halves run. Virtual time does not move."""
        if not self.stopped:
            raise RuntimeError("host time passes on its own while the machine runs: stop() it")
        if ns is None:
            ns = self.host.stop_ns(self._stops)
            self._stops += 1
        deadline = self.host_time.realtime_ns + max(0, ns)
        for _ in range(IDLE_WAKEUPS_MAX):
            next_host = self._next_host_event_realtime()
            if next_host is None or next_host >= deadline:
                break
            if next_host <= self.host_time.realtime_ns and self._host_work_idle():
                # Only a HOST-clock timer is due (those run at the guest's boundaries, not
                # here): every further turn of this loop would find the same event at the
                # same time and do nothing, until the bound. Leave it at once, as it would.
                break
            self.host_time.advance(next_host - self.host_time.realtime_ns)
            self._run_host_work()
        self.host_time.advance(deadline - self.host_time.realtime_ns)
        self._run_host_work()

    def cont(self) -> None:
        """Continue a stopped VM: devices are told, and `run` may go on."""
        if self.stopped:
            self.stopped = False
            self._note(ActivityKind.RUNSTATE, Side.HOST, "machine", "cont", self._notify_cont)

    def _notify_stop(self) -> None:
        self.notify_runstate(running=False)

    def _notify_cont(self) -> None:
        self.notify_runstate(running=True)

    # -- running --------------------------------------------------------------------------

    def set_breakpoints(self, pcs: frozenset[int] | set[int]) -> None:
        """Stop before executing an instruction at any of `pcs` (not the one resumed at)."""
        self.breakpoints = frozenset(pcs)
        self._regions.clear()
        self._steps.clear()
        self._page_entries.clear()

    def step(self) -> RunResult:
        """Execute one instruction (or stop first, as `run` would). An instruction that
        faults without being counted (an access fault) is one step too: it returns with
        the trap entered and `executed` 0, before the handler's first instruction."""
        self._one_instruction = True
        try:
            return self.run(1, single_step=True)
        finally:
            self._one_instruction = False

    def run(self, budget: int, *, single_step: bool = False) -> RunResult:
        """Execute exactly `budget` instructions unless a stop reason comes first.

        The main loop: the guest side at an instruction boundary (HOST timers behind a
        CLOCK_HOST checkpoint, virtual timers behind CLOCK_VIRTUAL, replay-scheduled bottom
        halves at the async point, interrupts), then a CPU slice that ends at the earliest
        of the budget, the host model's quantum and the next non-EXTERNAL virtual deadline,
        then the host side (host time passes, REALTIME timers, plain bottom halves,
        EXTERNAL timers). `single_step` interprets every instruction on its own:
        observably identical, only slower.
        """
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        if self.stopped:
            raise RuntimeError("the machine is stopped: cont() it before running")
        cpu = self.cpu
        replayer = self.replayer
        take_interrupt = self._take_interrupt
        self._stepped = False
        start = cpu.icount
        end = start + budget
        resume_at = (cpu.pc, start)  # a breakpoint here was hit already: run through it
        if self._stop is not StopReason.HOST_QUIT:  # a quit asked between runs still holds
            self._stop = None
        cpu.fault_loop = False
        idle_wakeups = stalled = 0
        reason: StopReason | None = None
        # The work due at this icount ran before the last run returned here (the pinned
        # sample point): a run resuming here goes on to the next instruction, so what the
        # host did in between (a stop lets host time pass) is seen at the next boundary,
        # where a recording logs it and a replay of it finds it.
        settled = cpu.icount == self._settled_icount
        while reason is None:
            if settled:
                settled = False
            else:
                self._guest_side()
            if cpu.irq_pending:
                take_interrupt()
            if self._stop is not None:
                reason = self._stop
                if reason is StopReason.HOST_QUIT and isinstance(self.rr, Recorder):
                    self.rr.shutdown(reason)  # here, at the boundary, not where it was asked
            elif replayer is not None and replayer.host_quit():
                reason = StopReason.HOST_QUIT
            elif replayer is not None and replayer.at_end():
                reason = StopReason.LOG_END
            elif cpu.halted:
                if cpu.mip & cpu.mie:
                    cpu.halted = False
                    idle_wakeups = 0
                else:
                    idle_wakeups += 1
                    if idle_wakeups > IDLE_WAKEUPS_MAX or not self._idle():
                        reason = StopReason.WFI_IDLE
            elif cpu.icount >= end and not self._boundary_busy():
                # The pinned sample point: the main loop has no more work at this icount
                # (else it goes round again, as an unbounded run would before executing).
                reason = StopReason.BUDGET
            else:
                before = cpu.icount
                quantum = self.host.quantum_insns(self._slices)
                if replayer is None:
                    limit = min(end, before + quantum, self._virtual_due_icount)
                else:
                    # The log's next event bounds the slice, not the virtual deadline: a
                    # timer runs where the log's checkpoint says.
                    gate = replayer.cpu_limit()
                    if gate <= before:
                        self._replay_wait()
                        continue
                    limit = min(end, before + quantum, gate)
                reason = self._cpu_exec(limit, resume_at, single_step=single_step)
                if self._stepped and reason is None:
                    reason = StopReason.BUDGET  # step(): one instruction, counted or not
                if cpu.icount != before:
                    idle_wakeups = stalled = 0
                else:
                    stalled += 1
                    if stalled > STALLED_SLICES_MAX and reason is None:
                        reason = StopReason.NO_PROGRESS
                self._host_side(cpu.icount - before)
        if replayer is not None and reason is StopReason.WFI_IDLE:
            self._raise_stall(f"the hart sleeps forever, but the log has {replayer.waiting_for()}")
        if reason is StopReason.HOST_QUIT:
            self._stop = None  # served
        if reason is StopReason.FINISHER_RESET:
            self.system_reset()  # the next run starts at the reset vector, as QEMU goes on
        self._settled_icount = cpu.icount
        code = self.finisher_code if reason is StopReason.FINISHER_FAIL else None
        return RunResult(reason, cpu.icount - start, code)

    def _guest_side(self) -> None:
        """Work due at this instruction boundary, in QEMU's order, behind its checkpoints."""
        lists = self.timer_lists
        host_timers = lists[ClockKind.HOST]
        rr = self.rr
        wanted = self.host_timers_due() if rr is None else rr.host_timers_wanted(self)
        if wanted and self.checkpoint(CheckpointKind.CLOCK_HOST):
            # The timers see the HOST clock as the guest would: through the choke point,
            # so a replay runs them against the recorded time.
            host_timers.run_expired(self.read_host_clock())
        virtual = lists[ClockKind.VIRTUAL]
        if virtual.changed:
            self._update_virtual_due()  # an EXTERNAL timer moving changes nothing here
        if self.cpu.icount >= self._virtual_due_icount:
            # Only when a non-EXTERNAL timer is due, a point that depends on guest time alone.
            if self.checkpoint(CheckpointKind.CLOCK_VIRTUAL):
                virtual.run_expired(self.vclock.now_ns(self.cpu.icount))
            self._update_virtual_due()
        if self.replayer is not None:
            self.replayer.async_point(self)  # what the log says runs here, and only that
        elif self._async_work() and self.checkpoint(CheckpointKind.ASYNC):
            self.bottom_halves.run_replay(announce=None if rr is None else rr.bottom_half)
            for backend in self.backends.values():
                backend.deliver(self.nondet)

    def _boundary_busy(self) -> bool:
        """Whether the main loop does more at this icount before the next instruction:
        a virtual timer is due or was moved (the CPU slice ends at once), or, in replay,
        the log has an event here for the main loop. A run stopping at this icount goes
        round until it has none, so a stop lands exactly where a run without one would
        execute the next instruction."""
        virtual = self.timer_lists[ClockKind.VIRTUAL]
        if virtual.changed:
            return True
        if self.replayer is not None:
            return self.replayer.gate_due_now()
        return self._virtual_due_icount <= self.cpu.icount

    def host_timers_due(self) -> bool:
        """Whether a HOST-clock timer has expired by the live host's clock. This decides
        where a CLOCK_HOST checkpoint goes, but in replay, which asks wherever one is armed
        (`host_timers_armed`) and lets the log say where the checkpoints were."""
        deadline = self.timer_lists[ClockKind.HOST].next_deadline_ns()
        return deadline is not None and deadline <= self.host_time.host_ns()

    def host_timers_armed(self) -> bool:
        return self.timer_lists[ClockKind.HOST].next_deadline_ns() is not None

    def _async_work(self) -> bool:
        return bool(self.bottom_halves.replay_queue) or any(
            backend.has_input() for backend in self.backends.values()
        )

    def _update_virtual_due(self) -> None:
        virtual = self.timer_lists[ClockKind.VIRTUAL]
        virtual.changed = False
        deadline = virtual.next_deadline_ns()
        if deadline is None or deadline >= NEVER_NS:
            self._virtual_due_icount = _NEVER
        else:
            self._virtual_due_icount = self.vclock.icount_at(deadline, self.cpu.icount)

    def _host_side(self, executed: int) -> None:
        """After a slice: the host's time passes and host-side work runs (none of it may
        change guest state: that is what the replay rules say and the fuzzer checks)."""
        self.host_time.advance(self.host.slice_host_ns(self._slices, executed))
        self._slices += 1
        self._run_host_work()

    def _run_host_work(self) -> None:
        self._deliver_stimulus()
        self.timer_lists[ClockKind.REALTIME].run_expired(self.host_time.realtime_ns)
        self.bottom_halves.run_plain()
        virtual = self.timer_lists[ClockKind.VIRTUAL]
        virtual.run_expired(self.vclock.now_ns(self.cpu.icount), external=True)

    def _host_work_idle(self) -> bool:
        """Whether `_run_host_work` at the current host time would change nothing: no
        stimulus due, no REALTIME or EXTERNAL virtual timer expired, no plain bottom half
        queued. (A HOST-clock timer does not count: host work does not run those.)"""
        now = self.host_time.realtime_ns
        if self._next_stimulus < len(self.stimulus) and (
            self.stimulus[self._next_stimulus].host_ns <= now
        ):
            return False
        if self.bottom_halves.plain_queue:
            return False
        realtime = self.timer_lists[ClockKind.REALTIME].next_deadline_ns()
        if realtime is not None and realtime <= now:
            return False
        external = self.timer_lists[ClockKind.VIRTUAL].next_deadline_ns(external=True)
        return external is None or external > self.vclock.now_ns(self.cpu.icount)

    def _deliver_stimulus(self) -> None:
        """Host input whose time has come arrives in its backend (a channel no device
        listens on drops it, as a host with nothing attached would)."""
        stimulus = self.stimulus
        now = self.host_time.realtime_ns
        while self._next_stimulus < len(stimulus) and stimulus[self._next_stimulus].host_ns <= now:
            event = stimulus[self._next_stimulus]
            self._next_stimulus += 1
            backend = self.backends.get(event.channel)
            # In replay live host input is dropped: the log has what reached the guest.
            live = backend is not None and self.replayer is None
            arrive = functools.partial(backend.arrive, event.payload) if live else _nothing  # type: ignore[union-attr]
            detail = f"{len(event.payload)} bytes"
            self._note(ActivityKind.STIMULUS, Side.HOST, event.channel, detail, arrive)

    def _idle(self) -> bool:
        """The hart sleeps in WFI with nothing pending. Warp virtual time to the next
        non-EXTERNAL virtual deadline (QEMU's sleep=off), or else let host time pass to the
        host's next event; False when there is neither (idle forever, pinned)."""
        deadline = self.timer_lists[ClockKind.VIRTUAL].next_deadline_ns()
        if self.replayer is not None:
            # The warp depends on guest state alone, so it lands where the recording's
            # did; anything else this hart waits for must come from the log.
            if deadline is not None and self.vclock.now_ns(self.cpu.icount) < deadline < NEVER_NS:
                self.vclock.warp_to(deadline, self.cpu.icount)
                self.timer_lists[ClockKind.VIRTUAL].changed = True
            else:
                self._replay_wait()
            return True
        if deadline is not None and deadline < NEVER_NS:
            self.vclock.warp_to(deadline, self.cpu.icount)
            self.timer_lists[ClockKind.VIRTUAL].changed = True
            return True
        if self.bottom_halves.plain_queue or self.bottom_halves.replay_queue:
            self._run_host_work()
            return True
        if any(b.has_input() for b in self.backends.values()) and self._deliver_now():
            return True
        next_host = self._next_host_event_realtime()
        if next_host is None:
            return False
        self.host_time.advance(next_host - self.host_time.realtime_ns)
        self._run_host_work()
        return True

    def _replay_wait(self) -> None:
        """Replay: the log's next event is due at this icount and nothing here has consumed
        it. Let host time pass to the host's next scheduled work and run it (a host-side
        effect may be what the log waits for); raise ReplayStall after REPLAY_WAIT_MAX
        iterations at one position, or at once when the host has nothing scheduled."""
        replayer = self.replayer
        assert replayer is not None
        replayer.check_overdue()
        mark = (self.cpu.icount, replayer.consumed)
        if mark != self._wait_mark:
            self._wait_mark = mark
            self._waits = 0
        self._waits += 1
        if self._waits > REPLAY_WAIT_MAX:
            self._raise_stall(f"waited {REPLAY_WAIT_MAX} main-loop iterations for it")
        next_host = self._next_host_event_realtime()
        if next_host is None and not self.bottom_halves.plain_queue:
            if self._waits == 1:
                # The main loop's guest side has not run since the log moved here (an
                # interrupt entered at this icount, a run resumed here): it consumes
                # input the log has at this icount, so it goes first.
                return
            self._raise_stall("nothing in the machine or the host can produce it")
        if next_host is not None:
            self.host_time.advance(next_host - self.host_time.realtime_ns)
        self._run_host_work()

    def _raise_stall(self, why: str) -> None:
        replayer = self.replayer
        assert replayer is not None
        cpu = self.cpu
        queued = [bh.scheduled_icount for bh in self.bottom_halves.replay_queue]
        found = (
            f"the hart {'asleep in WFI' if cpu.halted else 'running'} at pc {cpu.pc:#010x}, "
            f"interrupt {'pending' if cpu.irq_pending else 'not pending'}, "
            f"replay bottom halves queued with ids {queued}"
        )
        raise replayer.error(
            ReplayStall, f"the replay waits for {replayer.waiting_for()}: {why}", found=found
        )

    def _next_host_event_realtime(self) -> int | None:
        """REALTIME of the host's next scheduled event (a REALTIME or HOST timer)."""
        candidates = []
        realtime = self.timer_lists[ClockKind.REALTIME].next_deadline_ns()
        if realtime is not None:
            candidates.append(realtime)
        host = self.timer_lists[ClockKind.HOST].next_deadline_ns()
        if host is not None:
            candidates.append(self.host_time.realtime_for_host(host))
        if self._next_stimulus < len(self.stimulus):
            candidates.append(self.stimulus[self._next_stimulus].host_ns)
        return max(min(candidates), self.host_time.realtime_ns) if candidates else None

    def _deliver_now(self) -> bool:
        """While the hart sleeps: let frontends take buffered host input (at the async
        point, behind its checkpoint). True if any did."""
        if self.replayer is not None or not self.checkpoint(CheckpointKind.ASYNC):
            return False  # replay delivers input where the log says, at the guest side
        return any([backend.deliver(self.nondet) for backend in self.backends.values()])

    def _cpu_exec(
        self, limit: int, resume_at: tuple[int, int], *, single_step: bool
    ) -> StopReason | None:
        """Run the CPU up to icount `limit`; return early for anything the main loop must
        see (a timer moved, a stop, WFI), taking interrupts at instruction boundaries."""
        cpu = self.cpu
        lookup = self._regions.get
        heat = self._heat
        breakpoints = self.breakpoints
        virtual = self.timer_lists[ClockKind.VIRTUAL]
        take_interrupt = self._take_interrupt
        slice_end = limit = min(limit, cpu.icount + _SLICE_MAX)
        observe_at = self._next_observe
        limit = min(limit, observe_at)
        pc = cpu.pc
        reason: StopReason | None = None
        while True:
            ic = cpu.icount
            if ic >= observe_at:
                # Right after the instruction that reached it: before any interrupt here.
                cpu.pc = pc
                self._observe()
                observe_at = self._next_observe
                limit = min(slice_end, observe_at)
            if cpu.irq_pending:
                cpu.pc = pc
                take_interrupt()
                pc = cpu.pc
            if ic >= limit or cpu.halted or virtual.changed:
                break
            if breakpoints and pc in breakpoints and (pc, ic) != resume_at:
                reason = StopReason.BREAKPOINT
                break
            fn = None if single_step else lookup(pc)
            if fn is None and not single_step:
                entries = heat.get(pc, 0) + 1
                heat[pc] = entries
                if entries >= self.hot_block_entries:
                    fn = self._translate(pc)
            if fn is None:
                pc = self._interpret(pc, limit, single=single_step)
                self._stepped = self._one_instruction
            else:
                next_pc = fn(limit)
                if next_pc == pc and cpu.icount == ic and self._stop is None:
                    # The region's first block does not fit below the limit: interpret it.
                    next_pc = self._interpret(pc, limit, single=False)
                pc = next_pc
            if self._stop is not None:
                reason = self._stop
                break
            if cpu.fault_loop:
                reason = StopReason.FAULT_LOOP
                break
            if self._stepped:
                break
        cpu.pc = pc
        return reason

    def _interpret(self, pc: int, limit: int, *, single: bool) -> int:
        """Interpret from `pc` to the end of its block (or one instruction), below `limit`.

        Also returns after any access that left the RAM fast path (it may have raised an
        interrupt, moved a timer or asked to stop: the run loop must see that at once) and
        before a breakpoint.
        """
        cpu = self.cpu
        lookup = self._steps.get
        breakpoints = self.breakpoints
        first = True
        while cpu.icount < limit:
            if breakpoints and not first and pc in breakpoints:
                return pc
            first = False
            entry = lookup(pc) or self._decode_step(pc)
            try:
                pc = entry[0]()
            except GuestTrap as trap:
                cpu.leave_block = False
                if self.rr is not None:
                    return self._logged_exception(trap.cause, trap.tval, pc)
                return cpu.enter_exception(trap.cause, trap.tval, pc)
            if entry[1] or cpu.leave_block or single:
                cpu.leave_block = False
                return pc
        return pc

    def _decode_step(self, pc: int) -> tuple[StepFn, bool]:
        word = self.bus.fetch(pc)
        if word is None:
            return self._fetch_fault_step(pc), True
        entry = build_step(self._env, pc, word)
        self._steps[pc] = entry
        self._note_code(pc >> PAGE_SHIFT, pc)
        return entry

    def _fetch_fault_step(self, pc: int) -> StepFn:
        """Nothing executable at `pc`: an instruction access fault, which icount does not count."""

        def step() -> int:
            raise GuestTrap(Cause.INSN_ACCESS_FAULT, pc)

        return step

    def _translate(self, pc: int) -> RegionFn | None:
        """Translate the region at `pc` (None if nothing can be fetched there)."""
        if self.breakpoints:
            blocks = discover_region(self.bus.fetch, pc, max_blocks=1, stop_pcs=self.breakpoints)
        else:
            blocks = discover_region(self.bus.fetch, pc)
        if not blocks:
            return None
        fn = bind(compile_region(blocks, stop_pcs=self.breakpoints), self._env)
        self._regions[pc] = fn
        for block in blocks:
            for insn in block.insns:
                self._note_code(insn.pc >> PAGE_SHIFT, pc)
        return fn

    def _note_code(self, page: int, entry_pc: int) -> None:
        entries = self._page_entries.get(page)
        if entries is None:
            self.bus.mark_code_page(page)
            entries = self._page_entries[page] = set()
        entries.add(entry_pc)

    def _invalidate_page(self, page: int) -> None:
        for pc in self._page_entries.pop(page, ()):
            self._regions.pop(pc, None)
            self._steps.pop(pc, None)

    def _csr_instruction(self, number: int, op: int, value: int, write: bool, word: int) -> int:  # noqa: FBT001 - called from generated code
        try:
            return self.cpu.csr_access(number, op, value, write=write)
        except GuestTrap:
            raise GuestTrap(Cause.ILLEGAL_INSN, word) from None

    def _wfi(self) -> None:
        if not self.cpu.mip & self.cpu.mie:
            self.cpu.halted = True
