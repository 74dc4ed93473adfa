"""The ns16550a UART0 at 0x1000_0000 (QEMU `virt`, PLIC source 10), register-compatible with
QEMU 7.2's hw/char/serial.c as virt instantiates it (serial_mm, reg-shift 0, baudbase 399193).

Registers are one byte wide with reg-shift 0, so the device window is 8 bytes (virt reserves
0x100, but the rest is unmapped and faults, as in QEMU). Any access width works and moves the
low byte: one access is one register access, as in QEMU's serial_mm.

| offset | DLAB=0 read | DLAB=0 write | DLAB=1 |
|---|---|---|---|
| 0 | RBR (pops the RX FIFO) | THR (sent at once) | DLL |
| 1 | IER (4 bits) | IER | DLM |
| 2 | IIR | FCR (write-only) | |
| 3 | LCR | LCR | |
| 4 | MCR (5 bits) | MCR | |
| 5 | LSR (a read clears OE and BI) | ignored | |
| 6 | MSR | ignored | |
| 7 | SCR | SCR | |

Transmit: the host side is write-all, so a byte written to THR leaves at once (QEMU's
serial_xmit on a chardev that accepts it): LSR reads THRE|TEMT (0x60) right after, and the
THR-empty interrupt is pending again (`thr_ipending`). With MCR.LOOP set the byte goes to the
receiver instead of the console, as QEMU's serial_xmit does.

Receive: bytes come from the char backend named after the device (the stimulus channel
"uart0"), taken at the async point through the nondeterminism choke point; loopback bytes
come from THR. With FIFOs enabled they go into the 16-byte RX FIFO (a byte that finds it
full is dropped and sets LSR.OE); without, into RBR (a byte over an unread one sets OE).
Each received byte (re)arms the character timeout, a VIRTUAL-clock timer 4 character times
ahead (QEMU's fifo_timeout_timer), so it fires at an exact icount; it raises the timeout
interrupt if the FIFO still holds data then. Reading RBR re-arms it while data remains.

Interrupt identification, highest first (QEMU's serial_update_irq, which drives the line on
every call): receiver line status (IER.RLSI and LSR.OE/BI), character timeout (IER.RDI, as
QEMU gates it), received data (IER.RDI and DR, with FIFOs only at the trigger level 1/4/8/14),
THR empty (IER.THRI and `thr_ipending`). The line is high while IIR shows an interrupt.

Modem status: no modem lines reach the guest (QEMU's stdio/mux chardev has no TIOCM ioctl, so
its serial polls none): MSR reads DCD|DSR|CTS (0xB0) and its delta bits never set, so the
modem-status interrupt never fires; in loopback MSR reflects MCR (DTR->DSR, RTS->CTS,
OUT1->RI, OUT2->DCD), again without delta bits.

Everything below was checked on the reference qemu-system-riscv32 7.2.22 with guest programs
(tests/differential/guests/uart.S, which feeds the receiver through loopback):

- Reset values: RBR 0, IER 0, IIR 0x01, LCR 0, MCR 0x08 (OUT2), LSR 0x60, MSR 0xB0, SCR 0,
  divisor 0x000C. A system reset does NOT reset FCR (QEMU's serial_reset leaves it): after a
  guest reset with FIFOs enabled they stay enabled, at the same trigger level, while IIR
  reads 0x01 without the FIFO bits 0xC0 until FCR is written again.
- FCR is write-only (offset 2 reads IIR). Toggling its enable bit flushes both FIFOs; RX
  reset clears DR (also without FIFOs) and cancels the timeout; TX reset sets `thr_ipending`.
  IIR bits 7:6 read 0xC0 while FIFOs are enabled.
- Reading IIR while it shows THR empty clears `thr_ipending`; writing IER re-samples it from
  LSR.THRE when IER.THRI changes (and re-evaluates the line only if IER changed).
- The character time is QEMU 7.2.22's serial_update_parameters, computed in single-precision
  float: speed = baudbase / divisor (3500 for divisor 0), char_transmit_time =
  (1e9 / speed) * frame bits, truncated to ns (e.g. divisor 7, 8N1: 175353 ns, where integer
  arithmetic would give 175350). It is recomputed on every DLL, DLM or LCR write; after a
  reset, until one of those, it is QEMU's 9600-baud 8N1 default of 1041660 ns (not what the
  reset divisor and LCR would give), which is why it is saved state here.
- Host input is taken as QEMU's serial_can_receive allows: without FIFOs one byte while DR is
  clear; with FIFOs `itl - count` bytes below the trigger level, none at it, one above it, none
  when full. QEMU 7.2 takes host input in loopback too (observed with bytes on stdin).
"""

from __future__ import annotations

import struct
from typing import ClassVar, cast

from vm.clock import ClockKind
from vm.config import DeviceSpec
from vm.devices import Device, DeviceHost, IrqLine
from vm.vmstate import U8, U16, U64, Bool, Fifo, OptionalInt, Struct, VMStateDescription

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

IER_RDI = 0x01  # received data available (and character timeout)
IER_THRI = 0x02  # transmit holding register empty
IER_RLSI = 0x04  # receiver line status
IER_MSI = 0x08  # modem status (never fires here: see the module docstring)
IER_MASK = 0x0F

IIR_NO_INT = 0x01
IIR_ID = 0x06  # the bits that say which interrupt (QEMU tests them for THRI)
IIR_THRI = 0x02
IIR_RDI = 0x04
IIR_RLSI = 0x06
IIR_CTI = 0x0C  # character timeout
IIR_FE = 0xC0  # FIFOs enabled
IIR_HIGH = 0xF0  # the bits an interrupt re-evaluation keeps

FCR_FE = 0x01  # FIFO enable
FCR_RFR = 0x02  # receiver FIFO reset
FCR_XFR = 0x04  # transmitter FIFO reset
FCR_STICKY = 0xC9  # trigger level, DMA mode select, enable: the bits QEMU keeps
TRIGGER_LEVELS = (1, 4, 8, 14)  # by FCR bits 7:6

MCR_MASK = 0x1F
MCR_OUT2 = 0x08  # QEMU's serial_reset sets OUT2
MCR_LOOP = 0x10

LSR_DR = 0x01  # data ready
LSR_OE = 0x02  # overrun error
LSR_BI = 0x10  # break interrupt (no host break reaches this machine)
LSR_INT_ANY = 0x1E  # the bits that raise the receiver line status interrupt
LSR_THRE = 0x20  # transmit holding register empty
LSR_TEMT = 0x40  # transmitter empty

# QEMU's reset modem status: carrier detect, data set ready, clear to send.
MSR_RESET = 0xB0

FIFO_SIZE = 16
DIVISOR_RESET = 0x0C
BAUDBASE = 399_193  # virt's serial_mm_init clock
# QEMU's serial_reset: "9600 baud, 1 start bit, 8 data bits, 1 stop bit, no parity".
CHAR_TRANSMIT_TIME_RESET = (1_000_000_000 // 9600) * 10
TIMEOUT_CHARS = 4  # the character timeout, in character times


def _f32(value: float) -> float:
    """`value` rounded to single precision (a C float)."""
    return cast(float, struct.unpack("<f", struct.pack("<f", value))[0])


def char_transmit_time_ns(divisor: int, lcr: int) -> int:
    """QEMU 7.2.22's serial_update_parameters: the time one frame takes, in ns.

    QEMU computes in C floats: each operation below rounds to single precision (a double
    result of one float operation rounded once to float is the correctly rounded float
    result), and the assignment to an integer truncates."""
    frame = 1 + (lcr & 0x03) + 5 + (2 if lcr & 0x04 else 1)  # start, data and stop bits
    if lcr & 0x08:
        frame += 1  # parity
    speed = 3500.0 if divisor == 0 else _f32(BAUDBASE / divisor)
    return int(_f32(_f32(1e9 / speed) * frame))


def _unconnected(level: bool) -> None:  # noqa: FBT001 - a line level
    del level


class Uart16550(Device):
    """The 16550A with FIFOs, as QEMU 7.2's serial.c models it (see the module docstring)."""

    kind = "ns16550a"
    size = 8

    # Everything the guest can observe. Version 1 was the transmit-only UART (the first five
    # fields); a version-1 section loads with the rest at their reset values. The line's
    # remembered level is not saved: it follows IIR, and post_load re-derives it (the PLIC
    # saved the level it saw, so the line is not driven again).
    VMSTATE = VMStateDescription(
        "ns16550a",
        version=2,
        minimum_version=1,
        fields=[
            U8("ier"),
            U8("lcr"),
            U8("mcr"),
            U8("scr"),
            U16("divisor"),
            U8("rbr", since=2),
            U8("iir", since=2),
            U8("lsr", since=2),
            U8("fcr", since=2),
            Bool("thr_ipending", since=2),
            Bool("timeout_ipending", since=2),
            U64("char_transmit_time", since=2),
            Fifo("rx_fifo", capacity=FIFO_SIZE, since=2),
            Struct("timeout_timer", [OptionalInt("deadline_ns")], since=2),
        ],
        post_load=lambda uart: uart.after_load(),
    )
    # The backend (and the host bytes waiting in it) is the host's.
    HOST_SIDE: ClassVar[frozenset[str]] = frozenset({"backend"})
    # The character timeout's clock: VIRTUAL (rule 1). A class attribute only so that a
    # planted bug (vm/devices/planted.py) can build the same UART with the wrong clock.
    TIMEOUT_CLOCK: ClassVar[ClockKind] = ClockKind.VIRTUAL

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.irq = host.irq_line(spec.irq) if spec.irq is not None else IrqLine(_unconnected)
        self.timeout_timer = host.new_timer(self.TIMEOUT_CLOCK, self._timeout)
        self.backend = host.char_backend(spec.name)
        self.backend.connect(can_receive=self._can_receive, receive=self._receive)
        # FCR is zero at power-on only: a system reset leaves it (see the module docstring).
        self.fcr = 0
        self.reset()

    def reset(self) -> None:
        """QEMU's serial_reset (which leaves FCR as it is)."""
        self.rbr = 0
        self.ier = 0
        self.iir = IIR_NO_INT
        self.lcr = 0
        self.lsr = LSR_TEMT | LSR_THRE
        self.divisor = DIVISOR_RESET
        self.mcr = MCR_OUT2
        self.scr = 0
        self.char_transmit_time = CHAR_TRANSMIT_TIME_RESET
        self.timeout_ipending = False
        self.timeout_timer.cancel()
        self.rx_fifo = bytearray()
        self.thr_ipending = False
        self.irq.set(False)

    def after_load(self) -> None:
        """post_load: re-derive what the line remembers (do not drive it: the PLIC saved the
        level it had seen and may load after this device), and let the machine see the
        loaded timer deadline."""
        self.irq.level = self._interrupt_pending()
        self.timeout_timer.owner.changed = True

    # -- MMIO -----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        del size
        reg = offset & 7
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            return self.divisor & 0xFF if dlab else self._read_rbr()
        if reg == IER_DLM:
            return self.divisor >> 8 if dlab else self.ier
        if reg == IIR_FCR:
            value = self.iir
            if (value & IIR_ID) == IIR_THRI:
                self.thr_ipending = False
                self._update_irq()
            return value
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            value = self.lsr
            if value & (LSR_BI | LSR_OE):
                self.lsr &= ~(LSR_BI | LSR_OE)
                self._update_irq()
            return value
        if reg == MSR:
            return self._msr()
        return self.scr

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        reg = offset & 7
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
                self._update_parameters()
            else:
                self._write_thr(value)
        elif reg == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
                self._update_parameters()
            else:
                self._write_ier(value)
        elif reg == IIR_FCR:
            self._write_fcr(value)
        elif reg == LCR:
            self.lcr = value
            self._update_parameters()
        elif reg == MCR:
            self.mcr = value & MCR_MASK
        elif reg == SCR:
            self.scr = value
        # LSR and MSR ignore writes.

    def _read_rbr(self) -> int:
        if self.fcr & FCR_FE:
            value = self.rx_fifo.pop(0) if self.rx_fifo else 0
            if self.rx_fifo:
                self._arm_timeout()
            else:
                self.lsr &= ~(LSR_DR | LSR_BI)
            self.timeout_ipending = False
        else:
            value = self.rbr
            self.lsr &= ~(LSR_DR | LSR_BI)
        self._update_irq()
        return value

    def _write_thr(self, value: int) -> None:
        """serial_ioport_write then serial_xmit, which completes at once."""
        self.thr_ipending = False
        self.lsr &= ~(LSR_THRE | LSR_TEMT)
        self._update_irq()
        self.lsr |= LSR_THRE  # the byte moves on to the shift register at once
        self.thr_ipending = True
        self._update_irq()
        if self.mcr & MCR_LOOP:
            self._receive(bytes((value,)))
        else:
            self.host.console_write(bytes((value,)))
        self.lsr |= LSR_TEMT

    def _write_ier(self, value: int) -> None:
        changed = (self.ier ^ value) & IER_MASK
        self.ier = value & IER_MASK
        if changed & IER_THRI:
            # Enabling THRI re-samples LSR.THRE, even after an IIR read masked it.
            self.thr_ipending = bool(self.ier & IER_THRI and self.lsr & LSR_THRE)
        if changed:
            self._update_irq()

    def _write_fcr(self, value: int) -> None:
        if (value ^ self.fcr) & FCR_FE:
            value |= FCR_XFR | FCR_RFR  # enabling or disabling the FIFOs flushes them
        if value & FCR_RFR:
            self.lsr &= ~(LSR_DR | LSR_BI)
            self.timeout_timer.cancel()
            self.timeout_ipending = False
            self.rx_fifo.clear()
        if value & FCR_XFR:
            self.lsr |= LSR_THRE
            self.thr_ipending = True
        self.fcr = value & FCR_STICKY
        if self.fcr & FCR_FE:
            self.iir |= IIR_FE
        else:
            self.iir &= ~IIR_FE
        self._update_irq()

    def _msr(self) -> int:
        mcr = self.mcr
        if mcr & MCR_LOOP:
            # The modem outputs feed the inputs: OUT2->DCD, OUT1->RI, RTS->CTS, DTR->DSR.
            return (mcr & 0x0C) << 4 | (mcr & 0x02) << 3 | (mcr & 0x01) << 5
        return MSR_RESET

    def _update_parameters(self) -> None:
        self.char_transmit_time = char_transmit_time_ns(self.divisor, self.lcr)

    # -- receive ----------------------------------------------------------------------------

    def _trigger_level(self) -> int:
        return TRIGGER_LEVELS[self.fcr >> 6]

    def _can_receive(self) -> int:
        """How many host bytes the UART takes now: QEMU's serial_can_receive."""
        if self.fcr & FCR_FE:
            count = len(self.rx_fifo)
            if count >= FIFO_SIZE:
                return 0
            level = self._trigger_level()
            return level - count if count <= level else 1
        return 0 if self.lsr & LSR_DR else 1

    def _receive(self, data: bytes) -> None:
        """Bytes from the backend (at the async point) or from THR in loopback: QEMU's
        serial_receive1."""
        if not data:
            return
        if self.fcr & FCR_FE:
            for byte in data:
                if len(self.rx_fifo) < FIFO_SIZE:
                    self.rx_fifo.append(byte)
                else:
                    self.lsr |= LSR_OE  # an overrun never overwrites the FIFO
            self.lsr |= LSR_DR
            self._arm_timeout()
        else:
            if self.lsr & LSR_DR:
                self.lsr |= LSR_OE
            self.rbr = data[0]  # QEMU takes one byte here (it offers room for one)
            self.lsr |= LSR_DR
        self._update_irq()

    def _arm_timeout(self) -> None:
        # Capped at INT64_MAX ns, "never" (only a hand-made snapshot gets near it).
        deadline_ns = self.host.virtual_ns() + self.char_transmit_time * TIMEOUT_CHARS
        self.timeout_timer.mod(min(deadline_ns, (1 << 63) - 1))

    def _timeout(self) -> None:
        """The character timeout (VIRTUAL clock, behind its checkpoint): QEMU's
        fifo_timeout_int."""
        if self.rx_fifo:
            self.timeout_ipending = True
            self._update_irq()

    # -- interrupt --------------------------------------------------------------------------

    def _identify(self) -> int:
        ier, lsr = self.ier, self.lsr
        if ier & IER_RLSI and lsr & LSR_INT_ANY:
            return IIR_RLSI
        if ier & IER_RDI and self.timeout_ipending:
            return IIR_CTI
        if (
            ier & IER_RDI
            and lsr & LSR_DR
            and (not self.fcr & FCR_FE or len(self.rx_fifo) >= self._trigger_level())
        ):
            return IIR_RDI
        if ier & IER_THRI and self.thr_ipending:
            return IIR_THRI
        # QEMU's modem-status interrupt needs MSR delta bits, which never set here.
        return IIR_NO_INT

    def _interrupt_pending(self) -> bool:
        return (self.iir & ~IIR_HIGH) != IIR_NO_INT

    def _update_irq(self) -> None:
        """QEMU's serial_update_irq: IIR from the state, and the line driven on every call
        (the PLIC pends the source on every raise, also of a line already high)."""
        ident = self._identify()
        self.iir = ident | (self.iir & IIR_HIGH)
        self.irq.set(ident != IIR_NO_INT)
