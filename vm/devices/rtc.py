"""The goldfish RTC at 0x0010_1000 (QEMU `virt`, IRQ 11), register-compatible with QEMU 7.2.

Its count is the HOST clock (QEMU's default `-rtc clock=host`) plus a guest-set offset. Every
read of the HOST clock goes through the nondeterminism choke point, so a replay sees the
recorded value; the alarm is a timer on the HOST clock, which the main loop runs only behind
a CLOCK_HOST checkpoint, so in replay it fires where the log says.

Reading TIME_LOW latches the high word into TIME_HIGH, as in QEMU.
"""

from __future__ import annotations

from vm.clock import ClockKind
from vm.config import DeviceSpec
from vm.devices import Device, DeviceHost, IrqLine
from vm.vmstate import U32, U64, Bool, OptionalInt, Struct, VMStateDescription

TIME_LOW = 0x00
TIME_HIGH = 0x04
ALARM_LOW = 0x08
ALARM_HIGH = 0x0C
IRQ_ENABLED = 0x10
CLEAR_ALARM = 0x14
ALARM_STATUS = 0x18
CLEAR_INTERRUPT = 0x1C

MASK32 = 0xFFFF_FFFF
MASK64 = (1 << 64) - 1


def _unconnected(level: bool) -> None:  # noqa: FBT001
    del level


class GoldfishRtc(Device):
    kind = "goldfish_rtc"
    size = 0x1000
    access_sizes = frozenset({4})

    # The alarm is a HOST-clock timer: its deadline is guest-programmed state, saved with
    # the device; the line's remembered level is re-derived after a load (`post_load`).
    VMSTATE = VMStateDescription(
        "goldfish_rtc",
        version=1,
        minimum_version=1,
        fields=[
            U64("tick_offset"),
            U64("alarm_next"),
            Bool("alarm_running"),
            Bool("irq_pending"),
            Bool("irq_enabled"),
            U32("time_high"),
            Struct("alarm", [OptionalInt("deadline_ns")]),
        ],
        post_load=lambda rtc: rtc.after_load(),
    )

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.irq = host.irq_line(spec.irq) if spec.irq is not None else IrqLine(_unconnected)
        self.alarm = host.new_timer(ClockKind.HOST, self._alarm_fired)  # type: ignore[attr-defined]
        self.tick_offset = 0  # guest-set offset of the count from the HOST clock, in ns
        self.reset()

    def reset(self) -> None:
        # QEMU keeps tick_offset across a reset (the wall time does not jump back).
        self.alarm_next = 0
        self.alarm_running = False
        self.irq_pending = False
        self.irq_enabled = False
        self.time_high = 0
        self.alarm.cancel()
        self._update_irq()

    def after_load(self) -> None:
        # Re-derive, do not re-drive: the PLIC saved the level it had seen.
        self.irq.level = self.irq_pending and self.irq_enabled
        self.alarm.owner.changed = True

    def _count(self) -> int:
        return (self.tick_offset + self.host.read_host_clock()) & MASK64

    def read(self, offset: int, size: int) -> int:
        del size
        if offset == TIME_LOW:
            count = self._count()
            self.time_high = count >> 32
            return count & MASK32
        if offset == TIME_HIGH:
            return self.time_high
        if offset == ALARM_LOW:
            return self.alarm_next & MASK32
        if offset == ALARM_HIGH:
            return self.alarm_next >> 32
        if offset == IRQ_ENABLED:
            return int(self.irq_enabled)
        if offset == ALARM_STATUS:
            return int(self.alarm_running)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        if offset == TIME_LOW:
            # Setting the time moves the offset so the count reads `value` in its low word.
            count = self._count()
            self.tick_offset = (self.tick_offset + ((count & ~MASK32) | value) - count) & MASK64
        elif offset == TIME_HIGH:
            count = self._count()
            new = (value << 32) | (count & MASK32)
            self.tick_offset = (self.tick_offset + new - count) & MASK64
        elif offset == ALARM_LOW:
            self.alarm_next = (self.alarm_next & ~MASK32 & MASK64) | value
            self._set_alarm()
        elif offset == ALARM_HIGH:
            self.alarm_next = (value << 32) | (self.alarm_next & MASK32)
        elif offset == IRQ_ENABLED:
            self.irq_enabled = bool(value & 1)
            self._update_irq()
        elif offset == CLEAR_ALARM:
            self._clear_alarm()
        elif offset == CLEAR_INTERRUPT:
            self.irq_pending = False
            self._update_irq()

    def _set_alarm(self) -> None:
        if self.alarm_next <= self._count():
            self._clear_alarm()
            self._raise_alarm()
        else:
            # The HOST clock reaches the alarm when count == alarm_next: at alarm_next minus
            # the offset (QEMU arms its timer the same way).
            self.alarm.mod((self.alarm_next - self.tick_offset) & MASK64)
            self.alarm_running = True

    def _clear_alarm(self) -> None:
        self.alarm.cancel()
        self.alarm_running = False

    def _alarm_fired(self) -> None:
        self.alarm_running = False
        self._raise_alarm()

    def _raise_alarm(self) -> None:
        self.irq_pending = True
        self._update_irq()

    def _update_irq(self) -> None:
        self.irq.set(self.irq_pending and self.irq_enabled)
