"""Device models and the public interface they implement.

A device serves sized MMIO reads and writes at offsets in its window. Everything it needs
from the machine comes through `DeviceHost`: the icount of the accessing instruction (that
instruction included, pinned), virtual time derived from it, interrupt lines, timers on a
chosen clock, bottom halves (plain or replay-scheduled), HOST clock reads through the
nondeterminism choke point, stop requests and the console. Built-in devices use nothing
else, so a device in a user's own module is first-class.

Interrupt lines (pinned): a device drives `host.irq_line(n)` (PLIC source n, usually
`spec.irq`); the receiver stores the levels it has seen, so no device ever pushes its line
again from post_load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Protocol

from vm.config import DeviceSpec
from vm.stop import StopReason
from vm.vmstate import VMStateDescription

if TYPE_CHECKING:
    from vm.backends import BlockBackend, CharBackend, NetBackend
    from vm.bh import BottomHalf
    from vm.clock import ClockKind, Timer


class VirtualTimerHandle(Protocol):
    def mod(self, deadline_ns: int) -> None: ...

    def cancel(self) -> None: ...


class IrqLine:
    """One interrupt line from a device to its receiver (the PLIC, or mip for the CLINT).

    The line remembers its level so that raising it twice is one edge; the receiver keeps
    its own copy of the input levels (and its pending bits) in its saved state.
    """

    __slots__ = ("level", "sink")

    def __init__(self, sink: Callable[[bool], None]) -> None:
        self.sink = sink
        self.level = False

    def set(self, level: bool) -> None:  # noqa: FBT001 - a line level is naturally a bool
        self.level = level
        self.sink(level)

    def raise_(self) -> None:
        self.set(True)

    def lower(self) -> None:
        self.set(False)


class IrqReceiver(Protocol):
    """A device that takes interrupt lines (the PLIC): `set_input(source, level)`."""

    def set_input(self, source: int, level: bool) -> None: ...  # noqa: FBT001


class DeviceHost(Protocol):
    """The machine as a device sees it (`vm.machine.Machine` implements it)."""

    def irq_line(self, source: int) -> IrqLine: ...

    def io_icount(self) -> int: ...

    def virtual_ns(self) -> int: ...

    def set_cpu_irq(self, bit: int, *, level: bool) -> None: ...

    def request_stop(self, reason: StopReason, *, code: int | None = None) -> None: ...

    def console_write(self, data: bytes) -> None: ...

    def new_virtual_timer(self, callback: Callable[[], None]) -> VirtualTimerHandle: ...

    def new_timer(
        self, clock: ClockKind, callback: Callable[[], None], *, external: bool = False
    ) -> Timer: ...

    def new_bottom_half(self, callback: Callable[[], None], *, replay: bool) -> BottomHalf: ...

    def read_host_clock(self) -> int: ...

    def char_backend(self, name: str) -> CharBackend: ...

    def net_backend(self, name: str) -> NetBackend: ...

    def block_backend(self, name: str) -> BlockBackend: ...


class Device:
    """Base class: an MMIO window built from a `DeviceSpec`. Subclasses override `read` and
    `write`, and declare `kind` (the registry name) and `size` (the window in bytes)."""

    kind = "device"
    size = 0x1000
    # Access widths the device accepts; others fault, as QEMU's `valid` sizes make them.
    access_sizes: frozenset[int] = frozenset({1, 2, 4})
    # The device's saved state (vm.vmstate), declared by each subclass beside its fields.
    # None means "not declared": savevm refuses such a device by name rather than silently
    # dropping its state; a device without guest state declares an empty description.
    VMSTATE: ClassVar[VMStateDescription | None] = None
    # Attributes holding host-side or transient state (a backend handle, a host-paced
    # helper's bookkeeping, a cache) that a subclass declares by name: the state digest
    # (vm.digest) skips them. Every other instance attribute counts as guest state.
    HOST_SIDE: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        self.host = host
        self.spec = spec
        self.name = spec.name

    def read(self, offset: int, size: int) -> int:
        del offset, size
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        del offset, size, value

    def reset(self) -> None:
        """Return to the state after power-on (a system reset); the default has none."""

    def runstate_changed(self, *, running: bool) -> None:
        """The VM stopped (`running` False) or continues. Host time passes while it is
        stopped; stopping and continuing must not change guest state (replay rule 6)."""
        del running
