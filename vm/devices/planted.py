"""Planted bugs: deliberately broken variants of the built-in devices (see vm/planted.py).

Each class here is the real device model with one thing done wrong, so that it breaks
exactly one replay rule of vm/DEVICES.md; the fuzzer must catch every one of them, and the
real devices must never diverge. A variant overrides as little as it can: whatever it does
not override is the real device, so a divergence can only come from the planted mistake.
The lines that are the mistake are marked `BUG`.

They are not in the registry's BUILTIN_DEVICES (the vmstate meta-tests check real devices
only): a machine builds one only when its configuration names the bug in `planted_bugs`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol, cast

from vm.clock import ClockKind
from vm.config import DeviceSpec
from vm.devices import DeviceHost
from vm.devices.block import BlockDevice
from vm.devices.clint import Clint
from vm.devices.entropy import WORD_BYTES, EntropyDevice
from vm.devices.nic import Nic
from vm.devices.rtc import MASK64, GoldfishRtc
from vm.devices.uart import TIMEOUT_CHARS, Uart16550

if TYPE_CHECKING:
    from vm.clock import HostTime
    from vm.hostmodel import HostModel

MASK32 = 0xFFFF_FFFF
# How long the coalescing NIC holds back a rising interrupt, in guest (VIRTUAL) ns.
NIC_COALESCE_NS = 1_000


class HostInternals(DeviceHost, Protocol):
    """The machine's host side, which no correct device touches for guest-visible values:
    the host model and its clocks (vm.machine.Machine has both)."""

    @property
    def host(self) -> HostModel: ...

    @property
    def host_time(self) -> HostTime: ...


def _internals(device_host: DeviceHost) -> HostInternals:
    return cast(HostInternals, device_host)


# -- rule 1: timers that change guest state run on the VIRTUAL clock ---------------------------


class UartRxTimeoutRealtime(Uart16550):
    """The 16550 with its RX character-timeout timer on the REALTIME clock (rule 1).

    The timeout raises the character-timeout interrupt (IIR 0x0C), guest state, but a
    REALTIME timer fires on the main loop's host side when host time reaches it: after
    however many instructions the host's slices happened to run, which another host seed
    (or a replay) changes. A guest that polls IIR, or takes the interrupt, sees it at
    another icount."""

    TIMEOUT_CLOCK = ClockKind.REALTIME  # BUG: VIRTUAL in the real UART

    def _arm_timeout(self) -> None:
        # BUG: four character times of host time from now, not of guest time.
        now_ns = _internals(self.host).host_time.realtime_ns
        self.timeout_timer.mod(now_ns + self.char_transmit_time * TIMEOUT_CHARS)


class NicIrqExternalTimer(Nic):
    """The NIC "coalescing" its interrupt on an EXTERNAL virtual timer (rule 1).

    Where the real NIC drives its line as INT_STATUS changes (a packet taken at the async
    point, a doorbell), this one holds a rising line back NIC_COALESCE_NS and raises it
    from an EXTERNAL timer. EXTERNAL timers are paced by guest time but fire on the host
    side, after whatever slice crossed the deadline: mip.MEIP and the PLIC's pending bit
    change at an icount the host chose, which a replay does not reproduce."""

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        # BUG: EXTERNAL, so it neither bounds a slice nor runs behind a checkpoint.
        self.coalesce_timer = host.new_timer(ClockKind.VIRTUAL, self._coalesced, external=True)

    def _update_irq(self) -> None:
        if self.int_status & self.int_mask:
            if not self.coalesce_timer.pending:
                self.coalesce_timer.mod(self.host.virtual_ns() + NIC_COALESCE_NS)  # BUG
        else:
            self.irq.lower()  # reset() runs this before the timer exists: lowering needs none

    def _coalesced(self) -> None:
        self.irq.set(bool(self.int_status & self.int_mask))


# -- rule 2: bottom halves that change guest state are replay-scheduled ------------------------


class BlockPlainBh(BlockDevice):
    """The block device raising its completion interrupt from a plain bottom half (rule 2).

    The completion itself still arrives through the choke point at the async point (data
    moved, DONE queue updated), but the line to the PLIC rises in a plain bottom half,
    which the main loop runs on its host side after the next slice, wherever the host
    ended it: mip.MEIP rises at an icount the log cannot reproduce."""

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        # BUG: replay=False. reset() (run by the base __init__) has no completions, so it
        # only lowers the line and never needs this before it exists.
        self.completion_bh = host.new_bottom_half(self._raise_completion, replay=False)

    def _update_irq(self) -> None:
        if self.done:
            self.completion_bh.schedule()  # BUG: the line rises where the host says
        else:
            self.irq.lower()

    def _raise_completion(self) -> None:
        self.irq.set(bool(self.done))


# -- rule 3: host input reaches the guest only through the choke point -------------------------


class RtcUnloggedClock(GoldfishRtc):
    """The goldfish RTC reading the HOST clock straight from the host model (rule 3).

    `host_time.host_ns()` is the live host's clock, never logged: a replay (on a host with
    another seed) reads its own wall time where the recording read another, so TIME_LOW,
    the alarm's comparison and any guest arithmetic on them differ."""

    def _count(self) -> int:
        # BUG: not `self.host.read_host_clock()`, the choke point.
        return (self.tick_offset + _internals(self.host).host_time.host_ns()) & MASK64


class EntropyUnlogged(EntropyDevice):
    """The entropy device taking host randomness straight from the host model (rule 3).

    Each DATA read asks the host model's entropy stream directly instead of passing
    `machine.nondet.value(RANDOM, ...)`: no RANDOM event is recorded, and a replay hands the
    guest its own host's bytes instead of the recorded ones."""

    def _data(self) -> int:
        if not self.enabled:
            return 0
        index = self.host_requests
        self.host_requests += 1
        data = _internals(self.host).host.entropy(index, WORD_BYTES)  # BUG: bypasses nondet
        self.words_served = (self.words_served + 1) & MASK32
        return int.from_bytes(data, "little") & MASK32


# -- rule 4: loadvm restores every field savevm should have saved ------------------------------


class ClintUnsavedTimer(Clint):
    """The CLINT whose vmstate leaves out `mtimecmp`, its timer's compare value (rule 4).

    The armed deadline is still saved (savevm refuses a machine whose guest-side timer no
    section saves, so leaving the deadline out would be refused, not silently lost), so the
    pending tick fires on time after loadvm; but mtimecmp keeps whatever the loading
    machine had (0 in a fresh one, a later value after a backward seek). The state digest
    differs at once, the guest reads a stale MTIMECMP, and a periodic timer that re-arms
    with `mtimecmp += period` fires at once again and again instead of every period;
    so does re-arming after an mtime write."""

    VMSTATE = dataclasses.replace(
        Clint.VMSTATE,
        fields=[field for field in Clint.VMSTATE.fields if field.attr != "mtimecmp"],  # BUG
    )


# -- rule 5: post_load touches only its own device ---------------------------------------------


class UartPostLoadIrq(Uart16550):
    """The 16550 re-driving its interrupt line from post_load (rule 5), as a device that
    "restores" its IRQ would.

    The PLIC saved the levels and pending bits it had; driving the line high reaches into
    it and pends source 10 again (the PLIC pends on every raise). Whether that survives
    depends on the section order: if the PLIC loads after the UART it overwrites the push,
    if before, a claimed-but-still-high UART interrupt is pending once more after loadvm."""

    def after_load(self) -> None:
        super().after_load()
        self.irq.set(self._interrupt_pending())  # BUG: a cross-device action from post_load


# -- rule 6: stopping and continuing the VM do not change guest state --------------------------


class RtcRunstateWrite(GoldfishRtc):
    """The goldfish RTC acknowledging its alarm when the VM stops (rule 6), as if a stop
    were a suspend: a pending alarm interrupt is cleared and the line lowered.

    Any stop while `irq_pending` is set (an alarm that fired, or any ALARM_LOW write of a
    time already past, which raises it at once) changes guest state: the digest after
    stop/cont differs, and a guest that has not yet taken the interrupt never sees it."""

    def runstate_changed(self, *, running: bool) -> None:
        if not running:
            self.irq_pending = False  # BUG: guest state changed by a stop
            self._update_irq()
