"""Why `Machine.run` returned (pinned: later parts add members, never replace these)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StopReason(enum.Enum):
    """The reason a run stopped. String values are stable: reports and logs persist them."""

    BUDGET = "budget"  # executed exactly the requested number of instructions
    FINISHER_PASS = "finisher-pass"  # sifive_test written with 0x5555
    FINISHER_FAIL = "finisher-fail"  # sifive_test written with (code << 16) | 0x3333
    FINISHER_RESET = "finisher-reset"  # sifive_test written with 0x7777
    WFI_IDLE = "wfi-idle"  # WFI with no interrupt pending (mip & mie == 0)
    BREAKPOINT = "breakpoint"  # about to execute an instruction at a breakpoint pc
    DEVICE_REQUEST = "device-request"  # a device asked the machine to stop
    FAULT_LOOP = "fault-loop"  # the trap handler faults at once, forever, without progress
    NO_PROGRESS = "no-progress"  # the main loop ran no instruction for 100 slices (a device
    # keeps its timers due forever); stopping beats hanging
    LOG_END = "log-end"  # replay: the log's END is reached, where the recording ended
    HOST_QUIT = "host-quit"  # the host asked the VM to quit (Machine.request_quit)


FINISHER_REASONS = frozenset(
    {StopReason.FINISHER_PASS, StopReason.FINISHER_FAIL, StopReason.FINISHER_RESET}
)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one `Machine.run(budget)` call did."""

    reason: StopReason
    executed: int  # instructions counted (icount) during this call
    finisher_code: int | None = None  # the guest's exit code for FINISHER_FAIL
