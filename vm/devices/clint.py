"""The CLINT (SiFive/ACLINT layout) at 0x0200_0000: msip, mtimecmp and mtime for hart 0.

mtime runs at 10 MHz from the VIRTUAL clock: mtime = virtual_ns * 10e6 / 1e9, rounded down,
plus a delta that guest writes to mtime set. A mtimecmp write arms the timer as QEMU's
ACLINT does: MTIP is raised at once if mtimecmp <= mtime, otherwise lowered and a virtual
timer armed at now_ns + (mtimecmp - mtime) * 100 ns, whose callback re-evaluates.
"""

from __future__ import annotations

from vm.config import DeviceSpec
from vm.csr import MIP_MSIP, MIP_MTIP
from vm.devices import Device, DeviceHost
from vm.vmstate import U32, U64, OptionalInt, Struct, VMStateDescription

MSIP = 0x0000
MTIMECMP_LO = 0x4000
MTIMECMP_HI = 0x4004
MTIME_LO = 0xBFF8
MTIME_HI = 0xBFFC

TIMEBASE_HZ = 10_000_000
NS_PER_TICK = 1_000_000_000 // TIMEBASE_HZ
MASK64 = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1


class Clint(Device):
    kind = "clint"
    size = 0xC000  # QEMU's ACLINT: swi 0x0000-0x3fff, mtimer 0x4000-0xbfff
    access_sizes = frozenset({4})

    # mtime itself is not state: it derives from the virtual clock (saved by the machine)
    # and time_delta. The timer's deadline is saved as it stands rather than recomputed
    # from mtimecmp, so a load needs neither the clock nor the CPU. MTIP and MSIP are not
    # pushed again after a load: mip (the receiver) saves the levels it has seen.
    VMSTATE = VMStateDescription(
        "clint",
        version=1,
        minimum_version=1,
        fields=[
            U32("msip"),
            U64("mtimecmp"),
            U64("time_delta"),
            Struct("timer", [OptionalInt("deadline_ns")]),
        ],
        post_load=lambda clint: clint.rearm_after_load(),
    )

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.msip = 0
        self.mtimecmp = 0
        self.time_delta = 0
        self.timer = host.new_virtual_timer(self._timer_expired)
        self.reset()

    def reset(self) -> None:
        """ACLINT reset writes 0 to mtime, which re-evaluates mtimecmp (at power-on 0 <= 0, so
        MTIP starts high); mtimecmp and msip keep their values, as in QEMU 7.2."""
        self.time_delta = 0
        self.time_delta = -self.mtime() & MASK64
        self._write_timecmp(self.mtimecmp)

    def rearm_after_load(self) -> None:
        """post_load: the engine assigned `timer.deadline_ns` directly, which the timer list
        does not notice; re-arming through Timer.mod/cancel marks the list changed, so the
        main loop recomputes where its next slice must end."""
        deadline_ns = self.timer.deadline_ns  # type: ignore[attr-defined]
        if deadline_ns is None:
            self.timer.cancel()
        else:
            self.timer.mod(deadline_ns)

    def mtime(self) -> int:
        return (self.host.virtual_ns() // NS_PER_TICK + self.time_delta) & MASK64

    def read(self, offset: int, size: int) -> int:
        del size
        if offset == MSIP:
            return self.msip
        if offset == MTIMECMP_LO:
            return self.mtimecmp & 0xFFFF_FFFF
        if offset == MTIMECMP_HI:
            return self.mtimecmp >> 32
        if offset == MTIME_LO:
            return self.mtime() & 0xFFFF_FFFF
        if offset == MTIME_HI:
            return self.mtime() >> 32
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        if offset == MSIP:
            self.msip = value & 1
            self.host.set_cpu_irq(MIP_MSIP, level=bool(self.msip))
        elif offset == MTIMECMP_LO:
            self._write_timecmp((self.mtimecmp & ~0xFFFF_FFFF & MASK64) | value)
        elif offset == MTIMECMP_HI:
            self._write_timecmp((value << 32) | (self.mtimecmp & 0xFFFF_FFFF))
        elif offset in (MTIME_LO, MTIME_HI):
            now = self.mtime()
            if offset == MTIME_LO:
                new = (now & ~0xFFFF_FFFF & MASK64) | value
            else:
                new = (value << 32) | (now & 0xFFFF_FFFF)
            self.time_delta = (self.time_delta + new - now) & MASK64
            self._write_timecmp(self.mtimecmp)

    def _write_timecmp(self, value: int) -> None:
        self.mtimecmp = value & MASK64
        now = self.mtime()
        if self.mtimecmp <= now:
            self.timer.cancel()
            self.host.set_cpu_irq(MIP_MTIP, level=True)
            return
        self.host.set_cpu_irq(MIP_MTIP, level=False)
        # QEMU 7.2 converts with a 64-bit muldiv64; a product that wrapped (ns_diff < diff)
        # or passed INT64_MAX means "never" (INT64_MAX), and the sum is capped there too.
        diff = self.mtimecmp - now
        ns_diff = (diff * NS_PER_TICK) & MASK64
        if ns_diff < diff or ns_diff > INT64_MAX:
            deadline_ns = INT64_MAX
        else:
            deadline_ns = min(self.host.virtual_ns() + ns_diff, INT64_MAX)
        self.timer.mod(deadline_ns)

    def _timer_expired(self) -> None:
        self._write_timecmp(self.mtimecmp)
