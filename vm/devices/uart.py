"""The ns16550a UART0 at 0x1000_0000 (transmit side; the receive side and IRQs come later).

Registers are one byte wide with QEMU's `virt` reg-shift 0, so the device window is 8 bytes
(virt reserves 0x100, but the rest is unmapped and faults, as in QEMU). Any access width
works and moves the low byte, as in QEMU's serial_mm.
"""

from __future__ import annotations

from vm.config import DeviceSpec
from vm.devices import Device, DeviceHost
from vm.vmstate import U8, U16, VMStateDescription

# Register offsets (DLAB = LCR bit 7 selects the divisor latch at offsets 0 and 1).
RBR_THR_DLL = 0
IER_DLM = 1
IIR_FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

LCR_DLAB = 0x80
LSR_THRE = 0x20  # transmit holding register empty
LSR_TEMT = 0x40  # transmitter empty
IIR_NO_INT = 0x01
# QEMU's reset modem status: carrier detect, data set ready, clear to send.
MSR_RESET = 0xB0
MCR_OUT2 = 0x08  # QEMU's serial_reset sets OUT2


class Uart16550(Device):
    """Transmission completes at once (the host side is write-all), so LSR reads 0x60."""

    kind = "ns16550a"
    size = 8

    # LSR, IIR and MSR read constants here (transmission completes at once), so the five
    # registers below are the whole state.
    VMSTATE = VMStateDescription(
        "ns16550a",
        version=1,
        minimum_version=1,
        fields=[U8("ier"), U8("lcr"), U8("mcr"), U8("scr"), U16("divisor")],
    )

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.reset()

    def reset(self) -> None:
        """QEMU's serial_reset."""
        self.ier = 0
        self.lcr = 0
        self.mcr = MCR_OUT2
        self.scr = 0
        self.divisor = 0

    def read(self, offset: int, size: int) -> int:
        del size
        reg = offset & 7
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            return self.divisor & 0xFF if dlab else 0
        if reg == IER_DLM:
            return self.divisor >> 8 if dlab else self.ier
        if reg == IIR_FCR:
            return IIR_NO_INT
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            return LSR_THRE | LSR_TEMT
        if reg == MSR:
            return MSR_RESET
        return self.scr

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        reg = offset & 7
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self.host.console_write(bytes((value,)))
        elif reg == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                self.ier = value & 0x0F
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            self.mcr = value & 0x1F
        elif reg == SCR:
            self.scr = value
