"""Device models and the small interface they implement.

A device serves sized MMIO reads and writes at offsets in its window. Everything it needs
from the machine comes through `DeviceHost`: the icount of the accessing instruction (that
instruction included, pinned), virtual time derived from it, interrupt lines, stop requests,
the console and virtual timers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from vm.config import DeviceSpec
from vm.stop import StopReason


class VirtualTimerHandle(Protocol):
    def mod(self, deadline_ns: int) -> None: ...

    def cancel(self) -> None: ...


class DeviceHost(Protocol):
    """The machine as a device sees it."""

    def io_icount(self) -> int: ...

    def virtual_ns(self) -> int: ...

    def set_cpu_irq(self, bit: int, *, level: bool) -> None: ...

    def request_stop(self, reason: StopReason, *, code: int | None = None) -> None: ...

    def console_write(self, data: bytes) -> None: ...

    def new_virtual_timer(self, callback: Callable[[], None]) -> VirtualTimerHandle: ...

    def read_host_clock(self) -> int: ...


class Device:
    """Base class: an MMIO window built from a `DeviceSpec`. Subclasses override `read` and
    `write`, and declare `kind` (the registry name) and `size` (the window in bytes)."""

    kind = "device"
    size = 0x1000
    # Access widths the device accepts; others fault, as QEMU's `valid` sizes make them.
    access_sizes: frozenset[int] = frozenset({1, 2, 4})

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        self.host = host
        self.spec = spec
        self.name = spec.name

    def read(self, offset: int, size: int) -> int:
        del offset, size
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        del offset, size, value
