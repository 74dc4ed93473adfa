"""The sifive_test finisher at 0x0010_0000: a guest writes a status word to end the run."""

from __future__ import annotations

from vm.devices import Device
from vm.stop import StopReason
from vm.vmstate import VMStateDescription

FINISHER_FAIL = 0x3333
FINISHER_PASS = 0x5555
FINISHER_RESET = 0x7777


class SifiveTest(Device):
    """Write 0x5555 to pass, (code << 16) | 0x3333 to fail with `code`, 0x7777 to reset.

    Other values are ignored and reads return 0, as in QEMU. QEMU accepts only 2- and
    4-byte accesses here; a byte access faults.
    """

    kind = "sifive_test"
    size = 0x1000
    access_sizes = frozenset({2, 4})

    # No guest state (a write only asks the machine to stop): an empty description, so
    # savevm knows the device was considered rather than forgotten.
    VMSTATE = VMStateDescription("sifive_test", version=1, minimum_version=1, fields=[])

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        if offset != 0:
            return
        status = value & 0xFFFF
        code = (value >> 16) & 0xFFFF
        if status == FINISHER_PASS:
            self.host.request_stop(StopReason.FINISHER_PASS, code=0)
        elif status == FINISHER_FAIL:
            self.host.request_stop(StopReason.FINISHER_FAIL, code=code)
        elif status == FINISHER_RESET:
            self.host.request_stop(StopReason.FINISHER_RESET)
