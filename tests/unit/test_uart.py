"""UART0, the ns16550a (vm/devices/uart.py): every register and behaviour, the receive side
through its char backend and host stimulus, the character timeout on the VIRTUAL clock, the
interrupt line as the PLIC sees it, and savevm/loadvm in the middle of a reception.

The register behaviour pinned here was checked on the reference QEMU 7.2.22
(tests/differential/guests/uart.S compares it section by section); host input cannot reach
that guest, so what QEMU's serial_can_receive/serial_receive1 do with it is pinned here.
"""

from __future__ import annotations

import pytest

from vm import Machine, MachineConfig, StopReason
from vm.asm import assemble_program
from vm.backends import Stimulus
from vm.clock import ClockKind
from vm.config import CLINT, FINISHER, PLIC, DeviceSpec
from vm.csr import MIP_MEIP
from vm.devices.uart import (
    CHAR_TRANSMIT_TIME_RESET,
    FIFO_SIZE,
    Uart16550,
    char_transmit_time_ns,
)
from vm.digest import diff, digest
from vm.nondet import NondetKind
from vm.snapshot import loadvm, savevm
from vm.vmstate import field_names, load, save

from .helpers import HANDLER, MODES, RAM_BASE, SMALL_RAM, UART0, load_code, run_mode

RBR, THR, DLL = 0, 0, 0
IER, DLM = 1, 1
IIR, FCR = 2, 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7

PLIC_BASE = 0x0C00_0000
PLIC_PENDING = PLIC_BASE + 0x1000
PLIC_CLAIM = PLIC_BASE + 0x20_0004
UART_IRQ = 10
SOURCE_BIT = 1 << UART_IRQ
MEI = 0x8000_000B  # mcause of a machine external interrupt

LOOP = 0x18  # MCR: LOOP | OUT2
NORMAL = 0x08


# -- helpers --------------------------------------------------------------------------------------


def machine(*, shift: int = 0, stimulus=(), seed: int = 0, ram_size: int = SMALL_RAM) -> Machine:
    return Machine(
        MachineConfig(ram_size=ram_size, icount_shift=shift), host_seed=seed, stimulus=stimulus
    )


def uart(m: Machine) -> Uart16550:
    device = m.devices["uart0"]
    assert isinstance(device, Uart16550)
    return device


def rd(m: Machine, offset: int) -> int:
    return m.bus.read(UART0 + offset, 1)


def wr(m: Machine, offset: int, value: int) -> None:
    m.bus.write(UART0 + offset, 1, value)


def send(m: Machine, data: bytes) -> None:
    """Write `data` to THR (in loopback the UART receives it)."""
    for byte in data:
        wr(m, THR, byte)


def drain(m: Machine) -> bytes:
    out = bytearray()
    while rd(m, LSR) & 1:
        out.append(rd(m, RBR))
    return bytes(out)


def pending(m: Machine) -> int:
    """The PLIC's pending bit for the UART's source."""
    return m.bus.read(PLIC_PENDING, 4) & SOURCE_BIT


def claim_all(m: Machine) -> None:
    while source := m.bus.read(PLIC_CLAIM, 4):
        m.bus.write(PLIC_CLAIM, 4, source)


def loopback(m: Machine, fcr: int | None = None, ier: int = 0) -> Machine:
    if fcr is not None:
        wr(m, FCR, fcr)
    wr(m, MCR, LOOP)
    wr(m, IER, ier)
    return m


def set_divisor(m: Machine, divisor: int, lcr: int) -> None:
    wr(m, LCR, 0x80)
    wr(m, DLL, divisor & 0xFF)
    wr(m, DLM, divisor >> 8)
    wr(m, LCR, lcr)


# -- registers ------------------------------------------------------------------------------------


def test_the_registers_read_qemus_reset_values():
    m = machine()
    assert [rd(m, offset) for offset in range(8)] == [0, 0, 0x01, 0, 0x08, 0x60, 0xB0, 0]
    wr(m, LCR, 0x80)
    assert (rd(m, DLL), rd(m, DLM)) == (0x0C, 0)  # the reset divisor is 12


@pytest.mark.parametrize(
    ("offset", "written", "read"),
    [(IER, 0xFF, 0x0F), (MCR, 0xFF, 0x1F), (MCR, 0xE7, 0x07), (LCR, 0x5F, 0x5F), (SCR, 0xA5, 0xA5)],
)
def test_control_registers_keep_their_writable_bits(offset, written, read):
    m = machine()
    wr(m, offset, written)
    assert rd(m, offset) == read


def test_lsr_and_msr_ignore_writes():
    m = machine()
    wr(m, LSR, 0)
    wr(m, MSR, 0)
    assert (rd(m, LSR), rd(m, MSR)) == (0x60, 0xB0)


def test_dlab_redirects_offsets_zero_and_one_to_the_divisor_latch():
    m = machine()
    wr(m, IER, 0x05)
    wr(m, LCR, 0x83)
    wr(m, DLL, 0x34)
    wr(m, DLM, 0x12)
    assert (rd(m, DLL), rd(m, DLM), rd(m, LCR)) == (0x34, 0x12, 0x83)
    assert m.console_output() == b""  # the DLL write was not a THR write
    wr(m, LCR, 0x03)
    assert (rd(m, IER), uart(m).divisor) == (0x05, 0x1234)


def test_fcr_is_write_only_and_iir_shows_the_fifos():
    m = machine()
    wr(m, FCR, 0xC1)
    assert rd(m, IIR) == 0xC1
    wr(m, FCR, 0xC0)
    assert rd(m, IIR) == 0x01


def test_thr_bytes_go_to_the_console_at_once_and_lsr_stays_0x60():
    m = machine()
    seen = []
    m.console_sink = seen.append
    wr(m, THR, ord("h"))
    assert seen == [b"h"] and rd(m, LSR) == 0x60
    wr(m, FCR, 0x01)
    wr(m, THR, ord("i"))
    assert m.console_output() == b"hi" and rd(m, LSR) == 0x60


# -- character time -------------------------------------------------------------------------------


# (divisor, LCR, ns): measured on QEMU 7.2.22 (4 x these is the timeout; uart.S at shift 0).
QEMU_CHAR_TIMES = [
    (1, 0x03, 25050),
    (1, 0x00, 17535),
    (1, 0x0F, 30060),
    (1, 0x1F, 30060),
    (2, 0x0C, 45090),
    (3, 0x03, 75151),  # float arithmetic: integers would give 75150
    (7, 0x03, 175353),  # integers: 175350
    (0, 0x03, 2857142),  # divisor 0 counts as 3500 baud
]


@pytest.mark.parametrize(("divisor", "lcr", "ns"), QEMU_CHAR_TIMES)
def test_the_character_time_is_qemus_float_formula(divisor, lcr, ns):
    assert char_transmit_time_ns(divisor, lcr) == ns


def test_the_character_time_starts_at_qemus_9600_baud_default_and_follows_each_write():
    m = machine()
    u = uart(m)
    assert u.char_transmit_time == CHAR_TRANSMIT_TIME_RESET == 1_041_660
    wr(m, LCR, 0x00)  # the same LCR: recomputed anyway, from divisor 12
    assert u.char_transmit_time == char_transmit_time_ns(12, 0) != CHAR_TRANSMIT_TIME_RESET
    wr(m, LCR, 0x80)
    wr(m, DLL, 7)
    assert u.char_transmit_time == char_transmit_time_ns(7, 0x80)
    wr(m, DLM, 0)
    wr(m, LCR, 0x03)
    assert u.char_transmit_time == 175353


# -- loopback, MSR, overrun -----------------------------------------------------------------------


def test_in_loopback_thr_bytes_reach_rbr_instead_of_the_console():
    m = loopback(machine())
    assert rd(m, LSR) == 0x60
    wr(m, THR, ord("A"))
    assert rd(m, LSR) == 0x61
    assert rd(m, RBR) == ord("A") and rd(m, LSR) == 0x60
    assert rd(m, RBR) == ord("A")  # without FIFOs RBR keeps its byte
    assert m.console_output() == b""
    wr(m, MCR, NORMAL)
    wr(m, THR, ord("B"))
    assert m.console_output() == b"B" and rd(m, LSR) == 0x60


@pytest.mark.parametrize("mcr", range(0x10, 0x20))
def test_in_loopback_msr_mirrors_mcr_without_delta_bits(mcr):
    m = machine()
    wr(m, MCR, mcr)
    expected = (mcr & 0x0C) << 4 | (mcr & 0x02) << 3 | (mcr & 0x01) << 5
    assert rd(m, MSR) == expected and rd(m, MSR) == expected
    wr(m, MCR, mcr & 0x0F)
    assert rd(m, MSR) == 0xB0


def test_ier_msi_never_raises_an_interrupt():
    m = machine()
    wr(m, IER, 0x08)
    for mcr in (0x1F, 0x10, 0x1F, 0x03):
        wr(m, MCR, mcr)
        rd(m, MSR)
    assert rd(m, IIR) == 0x01 and not uart(m).irq.level


def test_without_fifos_a_byte_over_an_unread_one_overruns_and_replaces_it():
    m = loopback(machine())
    send(m, b"BC")
    assert rd(m, LSR) == 0x63
    assert rd(m, LSR) == 0x61  # reading LSR cleared OE
    assert rd(m, RBR) == ord("C") and rd(m, LSR) == 0x60


# -- FIFO -----------------------------------------------------------------------------------------


def test_the_fifo_holds_sixteen_bytes_and_an_overrun_drops_the_new_one():
    m = loopback(machine(), fcr=0x01)
    send(m, bytes(range(0x60, 0x70)))
    assert rd(m, LSR) == 0x61 and len(uart(m).rx_fifo) == FIFO_SIZE
    send(m, b"\x70")
    assert rd(m, LSR) == 0x63 and rd(m, LSR) == 0x61
    assert [rd(m, RBR) for _ in range(16)] == list(range(0x60, 0x70))
    assert rd(m, LSR) == 0x60
    assert rd(m, RBR) == 0  # an empty FIFO reads 0


def test_dr_stays_set_until_the_last_byte_is_read():
    m = loopback(machine(), fcr=0x01)
    send(m, b"xyz")
    assert [(rd(m, RBR), rd(m, LSR)) for _ in range(3)] == [
        (ord("x"), 0x61),
        (ord("y"), 0x61),
        (ord("z"), 0x60),
    ]


def test_fcr_flushes_as_qemu_does():
    m = loopback(machine(), fcr=0x01)
    send(m, b"012")
    wr(m, FCR, 0x01)  # same value: kept
    wr(m, FCR, 0x41)  # new level, same enable: kept
    wr(m, FCR, 0x09)  # DMA mode select: kept
    assert bytes(uart(m).rx_fifo) == b"012"
    wr(m, FCR, 0x05)  # TX reset: the RX FIFO stays
    assert rd(m, RBR) == ord("0")
    wr(m, FCR, 0x03)  # RX reset
    assert rd(m, LSR) == 0x60 and not uart(m).rx_fifo
    send(m, b"45")
    wr(m, FCR, 0x00)  # disabling flushes
    assert rd(m, LSR) == 0x60 and rd(m, IIR) == 0x01
    send(m, b"P")
    wr(m, FCR, 0x01)  # enabling flushes (the byte in RBR too)
    assert rd(m, LSR) == 0x60 and rd(m, RBR) == 0


def test_an_rx_reset_without_fifos_clears_dr_but_not_rbr():
    m = loopback(machine())
    send(m, b"X")
    wr(m, FCR, 0x02)
    assert rd(m, LSR) == 0x60 and rd(m, RBR) == ord("X")


def test_trigger_bits_without_the_enable_bit_leave_the_fifos_off():
    m = loopback(machine(), fcr=0xC0)
    send(m, b"ab")
    assert rd(m, LSR) == 0x63 and rd(m, RBR) == ord("b")


@pytest.mark.parametrize(("fcr", "level"), [(0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)])
def test_the_data_interrupt_starts_at_the_trigger_level(fcr, level):
    m = loopback(machine(), fcr=fcr, ier=0x01)
    seen = []
    for byte in range(15):
        send(m, bytes([0x20 + byte]))
        seen.append(rd(m, IIR))
    assert seen == [0xC1] * (level - 1) + [0xC4] * (16 - level)
    assert uart(m).irq.level


def test_changing_the_trigger_level_re_evaluates_at_once():
    m = loopback(machine(), fcr=0x81, ier=0x01)
    send(m, b"12345")
    assert rd(m, IIR) == 0xC1
    wr(m, FCR, 0x41)
    assert rd(m, IIR) == 0xC4 and uart(m).irq.level
    wr(m, FCR, 0xC1)
    assert rd(m, IIR) == 0xC1 and not uart(m).irq.level


# -- IIR, THR empty, priority, line status --------------------------------------------------------


def test_the_thr_empty_interrupt_follows_qemus_thr_ipending():
    m = machine()
    wr(m, IER, 0x02)  # THRI on with THR empty: pending
    assert rd(m, IIR) == 0x02
    assert rd(m, IIR) == 0x01  # reading it cleared thr_ipending
    wr(m, IER, 0x02)  # IER unchanged: nothing re-sampled
    assert rd(m, IIR) == 0x01
    wr(m, IER, 0x03)  # another bit changed: still not re-sampled
    assert rd(m, IIR) == 0x01
    wr(m, IER, 0x00)
    wr(m, IER, 0x02)  # THRI off and on: re-sampled from LSR.THRE
    assert rd(m, IIR) == 0x02
    wr(m, THR, ord("x"))  # a transmitted byte empties THR again
    assert rd(m, IIR) == 0x02
    wr(m, FCR, 0x04)  # so does a TX reset
    assert rd(m, IIR) == 0x02 and rd(m, IIR) == 0x01


def test_a_tx_reset_sets_thr_ipending_even_with_thri_off():
    m = machine()
    wr(m, FCR, 0x04)
    assert uart(m).thr_ipending and rd(m, IIR) == 0x01
    wr(m, IER, 0x02)
    assert rd(m, IIR) == 0x02


def test_iir_priority_is_line_status_then_timeout_then_data_then_thr_empty():
    m = loopback(machine(), fcr=0x47)
    set_divisor(m, 1, 0x03)
    wr(m, IER, 0x0F)
    assert rd(m, IIR) == 0xC2  # THR empty
    send(m, bytes(range(0x41, 0x45)))
    assert rd(m, IIR) == 0xC4  # data at the trigger level beats THR empty
    send(m, bytes(range(0x45, 0x52)))  # 17 bytes: an overrun
    assert rd(m, IIR) == 0xC6
    assert rd(m, LSR) == 0x63
    assert rd(m, IIR) == 0xC4
    u = uart(m)
    u.timeout_timer.callback()  # as if the timeout had passed
    assert rd(m, IIR) == 0xCC
    send(m, b"\x52")  # another overrun: line status beats the timeout
    assert rd(m, IIR) == 0xC6 and rd(m, LSR) == 0x63 and rd(m, IIR) == 0xCC
    rd(m, RBR)  # clears the timeout: data again
    assert rd(m, IIR) == 0xC4
    wr(m, FCR, 0x43)  # RX flushed: THR empty (set by the last transmitted byte)
    assert rd(m, IIR) == 0xC2 and rd(m, IIR) == 0xC1


def test_the_line_status_interrupt_is_cleared_by_reading_lsr():
    m = loopback(machine(), ier=0x05)
    send(m, b"D")
    assert rd(m, IIR) == 0x04
    send(m, b"E")
    assert rd(m, IIR) == 0x06
    assert rd(m, LSR) == 0x63
    assert rd(m, IIR) == 0x04 and rd(m, LSR) == 0x61
    assert rd(m, RBR) == ord("E") and rd(m, IIR) == 0x01


def test_any_access_width_is_one_register_access():
    m = loopback(machine(), fcr=0x01)
    send(m, b"abcd")
    assert m.bus.read(UART0 + RBR, 4) == ord("a")  # pops one byte
    assert m.bus.read(UART0 + RBR, 2) == ord("b")
    assert m.bus.read(UART0 + MCR, 4) == LOOP
    assert m.bus.read(UART0 + IIR, 2) == 0xC1
    m.bus.write(UART0, 4, 0x1234_5678)  # sends the low byte
    m.bus.write(UART0, 2, 0xABCD)
    assert bytes(uart(m).rx_fifo) == b"cd\x78\xcd"


# -- the line, as the PLIC sees it ----------------------------------------------------------------


def test_every_re_evaluation_with_an_interrupt_drives_the_line_again():
    m = loopback(machine(), fcr=0x01)
    m.bus.write(PLIC_BASE + 4 * UART_IRQ, 4, 1)  # priority 1 > threshold 0, enabled
    m.bus.write(PLIC_BASE + 0x2000, 4, SOURCE_BIT)
    claim_all(m)
    wr(m, IER, 0x01)
    assert not pending(m)
    send(m, b"12")
    assert pending(m) and m.cpu.mip & MIP_MEIP
    claim_all(m)
    assert not pending(m)
    rd(m, LSR)  # no OE: not re-evaluated, not pended again
    assert not pending(m)
    rd(m, RBR)  # re-evaluated, still data: pended again
    assert pending(m)
    claim_all(m)
    rd(m, RBR)  # nothing left: the line goes low
    assert not pending(m) and not uart(m).irq.level


def test_the_line_level_follows_iir():
    m = loopback(machine(), fcr=0x01)
    u = uart(m)
    for ier, level in [(0x01, False), (0x02, True), (0x00, False)]:
        wr(m, IER, ier)
        assert u.irq.level is level
    wr(m, IER, 0x01)
    send(m, b"x")
    assert u.irq.level and u.iir == 0xC4
    rd(m, RBR)
    assert not u.irq.level and u.iir == 0xC1


def test_a_uart_without_an_interrupt_source_works_unconnected():
    spec = DeviceSpec("ns16550a", "uart0", UART0)
    m = Machine(MachineConfig(ram_size=SMALL_RAM, devices=(FINISHER, CLINT, PLIC, spec)))
    loopback(m, fcr=0x01, ier=0x01)
    send(m, b"q")
    assert rd(m, IIR) == 0xC4 and uart(m).irq.level and not pending(m)


# -- the character timeout ------------------------------------------------------------------------


TIMEOUT_PROGRAM = """
    .equ UART0, 0x10000000
    .equ PLIC, 0x0c000000
    li      s0, UART0
    li      t0, PLIC + 40           # source 10: priority 1 > threshold 0
    li      t1, 1
    sw      t1, 0(t0)
    li      t0, PLIC + 0x2000       # enabled
    li      t1, 0x400
    sw      t1, 0(t0)
    li      t0, 0x800               # MEIE
    csrw    mie, t0
    csrsi   mstatus, 8              # MIE
    li      t1, 0x80
    sb      t1, 3(s0)               # DLAB
    li      t1, {divisor}
    sb      t1, 0(s0)
    sb      zero, 1(s0)
    li      t1, {lcr}
    sb      t1, 3(s0)
    li      t1, 0x47                # FIFOs on, trigger level 4
    sb      t1, 2(s0)
    li      t1, 0x18                # loopback
    sb      t1, 4(s0)
    li      t1, 1                   # IER.RDI
    sb      t1, 1(s0)
    li      t1, 0x55
    sb      t1, 0(s0)               # receive one byte: the timeout is armed here
spin:
    addi    s1, s1, 1
    j       spin
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("divisor", "lcr", "shift"),
    [(1, 0x03, 0), (7, 0x03, 0), (3, 0x03, 5), (1, 0x00, 7), (2, 0x0C, 3)],
)
def test_the_timeout_interrupt_arrives_at_the_exact_icount(divisor, lcr, shift, mode):
    program = assemble_program(TIMEOUT_PROGRAM.format(divisor=divisor, lcr=lcr))
    m = load_code(program.image, shift=shift)
    spin = program.address_of("spin")
    m.set_breakpoints({spin})
    assert run_mode(m, 1000, mode).reason is StopReason.BREAKPOINT
    armed_at = m.cpu.icount  # the receiving store included
    char_time = char_transmit_time_ns(divisor, lcr)
    deadline = (armed_at << shift) + 4 * char_time
    timer = uart(m).timeout_timer
    assert timer.clock is ClockKind.VIRTUAL and timer.deadline_ns == deadline
    m.set_breakpoints({HANDLER})
    assert run_mode(m, 10_000_000, mode).reason is StopReason.BREAKPOINT
    assert m.cpu.icount == -(-deadline >> shift)  # the first boundary at the deadline
    assert m.cpu.mcause == MEI and m.cpu.mepc in (spin, spin + 4)
    assert uart(m).iir == 0xCC and not timer.pending


def test_the_timeout_needs_ier_rdi_to_show_like_data():
    m = loopback(machine(), fcr=0x47)
    send(m, b"12")
    u = uart(m)
    u.timeout_timer.callback()
    assert u.timeout_ipending and rd(m, IIR) == 0xC1 and not u.irq.level
    wr(m, IER, 0x01)
    assert rd(m, IIR) == 0xCC and u.irq.level


def test_an_rbr_read_clears_the_timeout_and_re_arms_it_while_data_remains():
    m = loopback(machine(shift=2), fcr=0x47, ier=0x01)
    set_divisor(m, 1, 0x03)
    send(m, b"12")
    u = uart(m)
    u.timeout_timer.callback()
    m.cpu.icount = 1000  # the read happens later
    assert rd(m, RBR) == ord("1")
    assert not u.timeout_ipending and rd(m, IIR) == 0xC1
    assert u.timeout_timer.deadline_ns == (1000 << 2) + 4 * 25050
    rd(m, RBR)  # the last byte: the timer is left as it is
    assert u.timeout_timer.deadline_ns == (1000 << 2) + 4 * 25050
    u.timeout_timer.callback()  # fires on an empty FIFO: nothing
    assert not u.timeout_ipending and rd(m, IIR) == 0xC1


def test_each_received_byte_pushes_the_timeout_back():
    m = loopback(machine(), fcr=0x47, ier=0x01)
    u = uart(m)
    send(m, b"1")
    first = u.timeout_timer.deadline_ns
    m.cpu.icount = 500
    send(m, b"2")
    assert u.timeout_timer.deadline_ns == first + 500 == 500 + 4 * CHAR_TRANSMIT_TIME_RESET


def test_an_rx_reset_cancels_the_timeout():
    m = loopback(machine(), fcr=0x47, ier=0x01)
    send(m, b"1")
    u = uart(m)
    u.timeout_timer.callback()
    send(m, b"2")
    wr(m, FCR, 0x43)
    assert not u.timeout_timer.pending and not u.timeout_ipending and rd(m, IIR) == 0xC1


def test_without_fifos_there_is_no_timeout():
    m = loopback(machine(), ier=0x01)
    send(m, b"1")
    assert not uart(m).timeout_timer.pending and rd(m, IIR) == 0x04


# -- host input: the char backend -----------------------------------------------------------------


def test_the_uart_listens_on_the_char_backend_named_after_it():
    m = machine()
    backend = m.backends["uart0"]
    assert backend.can_receive is not None and backend.receive is not None


@pytest.mark.parametrize(
    ("fcr", "count", "room"),
    [
        (0x01, 0, 1),
        (0x01, 1, 0),  # at the trigger level: nothing
        (0x01, 2, 1),  # above it: one byte at a time
        (0x41, 0, 4),
        (0x41, 3, 1),
        (0x41, 4, 0),
        (0x81, 5, 3),
        (0xC1, 0, 14),
        (0xC1, 14, 0),
        (0xC1, 15, 1),
        (0xC1, 16, 0),  # full
    ],
)
def test_can_receive_is_qemus_trigger_level_formula(fcr, count, room):
    m = loopback(machine(), fcr=fcr)
    send(m, bytes(count))
    wr(m, MCR, NORMAL)
    assert m.backends["uart0"].can_receive() == room


def test_without_fifos_can_receive_offers_one_byte_while_rbr_is_empty():
    m = machine()
    backend = m.backends["uart0"]
    assert backend.can_receive() == 1
    backend.receive(b"a")
    assert backend.can_receive() == 0
    rd(m, RBR)
    assert backend.can_receive() == 1


def test_host_bytes_reach_the_receiver_in_loopback_too():
    # QEMU 7.2's serial_can_receive does not look at MCR.LOOP (observed with bytes on stdin).
    m = loopback(machine(), fcr=0x01)
    backend = m.backends["uart0"]
    assert backend.can_receive() == 1
    backend.receive(b"h")
    assert rd(m, RBR) == ord("h")


def test_bytes_beyond_what_was_offered_overrun_as_in_qemu():
    m = machine()
    backend = m.backends["uart0"]
    backend.receive(b"ab")  # without FIFOs QEMU takes the first byte only
    assert rd(m, LSR) == 0x61 and rd(m, RBR) == ord("a")
    wr(m, FCR, 0x01)
    backend.receive(bytes(20))
    assert len(uart(m).rx_fifo) == 16 and rd(m, LSR) == 0x63


def test_received_bytes_pass_the_choke_point_as_char_reads():
    m = machine(stimulus=[Stimulus(10, "uart0", b"hi")])
    wr(m, FCR, 0x01)  # trigger level 1: one byte at a time, and none while one waits
    m.bus.write_bytes(RAM_BASE, (0x0000_006F).to_bytes(4, "little"))  # j .
    m.cpu.pc = RAM_BASE
    m.run(100_000)
    assert m.nondet.counts[NondetKind.CHAR_READ] == 1
    assert bytes(uart(m).rx_fifo) == b"h" and m.backends["uart0"].pending == b"i"
    assert rd(m, RBR) == ord("h")
    m.run(100_000)
    assert m.nondet.counts[NondetKind.CHAR_READ] == 2 and drain(m) == b"i"


# A guest that sleeps in WFI with the UART interrupt enabled through the PLIC and drains the
# RX FIFO in its handler into BUF, logging IIR at each interrupt into IIRS; it passes once
# {count} bytes came. `{wait}` is the waiting code (wfi, or nop to spin), `{irq_on}` what
# enables interrupts before it (csrsi mstatus, 8, or nothing for a guest that polls).
RX_PROGRAM = """
    .equ UART0, 0x10000000
    .equ PLIC, 0x0c000000
    .equ FINISHER, 0x100000
    .equ BUF, 0x80008000
    .equ IIRS, 0x80009000
    la      t0, handler
    csrw    mtvec, t0
    li      s0, UART0
    li      s1, BUF
    li      s2, IIRS
    li      t0, PLIC + 40           # source 10: priority 1 > threshold 0
    li      t1, 1
    sw      t1, 0(t0)
    li      t0, PLIC + 0x2000
    li      t1, 0x400
    sw      t1, 0(t0)
    li      t1, 0x80                # divisor 1, 8N1: the timeout is 4 x 25050 ns
    sb      t1, 3(s0)
    li      t1, 1
    sb      t1, 0(s0)
    sb      zero, 1(s0)
    li      t1, 0x03
    sb      t1, 3(s0)
    li      t1, {fcr}
    sb      t1, 2(s0)
    li      t1, 0x05                # IER: RDI | RLSI
    sb      t1, 1(s0)
    li      t0, 0x800               # MEIE
    csrw    mie, t0
    {irq_on}
    li      s3, BUF + {count}
wait:
    {wait}
    bltu    s1, s3, wait
    li      t0, FINISHER
    li      t1, 0x5555
    sw      t1, 0(t0)
handler:
    li      a0, 0x0c200004
    lw      a1, 0(a0)               # claim
    lbu     a2, 2(s0)
    sb      a2, 0(s2)               # log IIR
    addi    s2, s2, 1
1:  lbu     a2, 5(s0)
    andi    a2, a2, 1
    beqz    a2, 2f
    lbu     a2, 0(s0)
    sb      a2, 0(s1)
    addi    s1, s1, 1
    j       1b
2:  sw      a1, 0(a0)               # complete
    mret
"""

RX_STIMULUS = (
    Stimulus(1_000_000, "uart0", b"hello, "),
    Stimulus(5_000_000, "uart0", b"world! "),
    Stimulus(5_000_100, "uart0", b"0123456789abcdefXYZ"),
)
RX_BYTES = b"".join(s.payload for s in RX_STIMULUS)


def rx_machine(
    fcr: int,
    seed: int,
    *,
    wait: str = "wfi",
    irq_on: str = "csrsi mstatus, 8",
    stimulus=RX_STIMULUS,
    count: int | None = None,
) -> Machine:
    if count is None:
        count = sum(len(s.payload) for s in stimulus)
    source = RX_PROGRAM.format(fcr=fcr, count=count, wait=wait, irq_on=irq_on)
    program = assemble_program(source)
    m = machine(stimulus=stimulus, seed=seed, ram_size=64 << 10)
    m.bus.write_bytes(RAM_BASE, program.image)
    m.cpu.pc = RAM_BASE
    return m


@pytest.mark.parametrize("fcr", [0x00, 0x01, 0x41, 0xC1])
def test_stimulus_reaches_a_sleeping_guest_the_same_whatever_the_host_seed(fcr):
    iir_logs = set()
    for seed in range(4):
        m = rx_machine(fcr, seed)
        result = m.run(1_000_000)
        assert result.reason is StopReason.FINISHER_PASS, (seed, result)
        assert m.bus.read_bytes(0x8000_8000, len(RX_BYTES)) == RX_BYTES
        iirs = m.bus.read_bytes(0x8000_9000, 64).rstrip(b"\0")
        assert not any(iir & 0x0F == 0x06 for iir in iirs)  # never an overrun
        iir_logs.add(iirs)
        assert m.nondet.counts[NondetKind.CHAR_READ] >= 3
    if fcr == 0xC1:
        # "hello, " and "world! " each arrive whole, below the trigger level: they are
        # taken at the character timeout.
        assert all(0xCC in log for log in iir_logs)
    elif fcr in (0x00, 0x01):
        assert not any(0xCC in log for log in iir_logs)


# -- savevm/loadvm --------------------------------------------------------------------------------


def test_the_vmstate_covers_every_guest_attribute():
    m = machine()
    u = uart(m)
    attrs = set(vars(u)) - {"host", "spec", "name"}
    saved = {path.split(".")[0] for path in field_names(Uart16550.VMSTATE)}
    # The line's level is re-derived by post_load; the backend is the host's.
    assert attrs == saved | {"irq"} | Uart16550.HOST_SIDE


def run_until(m: Machine, condition, *, step: int = 50, limit: int = 2_000_000) -> None:
    while not condition(m):
        assert m.cpu.icount < limit, "the condition never held"
        result = m.run(step)
        assert result.reason is StopReason.BUDGET, result


def finish(m: Machine) -> None:
    result = m.run(2_000_000)
    assert result.reason is StopReason.FINISHER_PASS, result


def mid_timeout(m: Machine) -> bool:
    """Bytes wait in the FIFO below the trigger level with the timeout armed, and the host
    has delivered everything (what is left is guest state alone)."""
    u = uart(m)
    delivered = m._next_stimulus == len(m.stimulus) and not m.backends["uart0"].pending
    return bool(u.rx_fifo) and u.timeout_timer.pending and delivered


@pytest.mark.parametrize("order_seed", [None, 1, 2, 3])
def test_a_snapshot_mid_timeout_continues_exactly_as_the_original(order_seed):
    # The guest spins (a sleeping hart would warp straight to the deadline within one run).
    stimulus = (Stimulus(100_000, "uart0", b"abcdefg"),)  # below level 8: a timeout
    original = rx_machine(0x81, 7, wait="nop", stimulus=stimulus)
    run_until(original, mid_timeout)
    data = savevm(original)
    loaded = Machine(original.config)  # no host input: the bytes are in the UART now
    loadvm(loaded, data, section_order_seed=order_seed)
    assert digest(loaded) == digest(original) and diff(original, loaded) == []
    assert uart(loaded).timeout_timer.deadline_ns == uart(original).timeout_timer.deadline_ns
    assert bytes(uart(loaded).rx_fifo) == bytes(uart(original).rx_fifo) != b""
    finish(original)
    finish(loaded)
    assert loaded.cpu.icount == original.cpu.icount
    assert digest(loaded) == digest(original) and diff(original, loaded) == []
    assert loaded.bus.read_bytes(0x8000_8000, 7) == b"abcdefg"


def draining_first_payload(m: Machine) -> bool:
    """The handler is part-way through the first payload; the second has not arrived."""
    received = m.cpu.x[9] - 0x8000_8000  # s1, the guest's write pointer into BUF
    return m._next_stimulus == 1 and 0 < received < 7 and not m.backends["uart0"].pending


@pytest.mark.parametrize("fcr", [0x00, 0xC1])
def test_a_snapshot_of_a_sleeping_guest_mid_reception_keeps_what_it_received(fcr):
    # A hart asleep in WFI lets host time pass within a run, so the snapshot is taken while
    # its handler drains the first payload.
    original = rx_machine(fcr, 5)
    run_until(original, draining_first_payload, step=3)
    if fcr:
        assert uart(original).rx_fifo  # bytes wait in the FIFO
    data = savevm(original)
    # The host input still to come is the host's: the new machine gets it from its host.
    loaded = Machine(original.config, host_seed=99, stimulus=RX_STIMULUS[1:])
    loadvm(loaded, data)
    assert digest(loaded) == digest(original) and diff(original, loaded) == []
    finish(original)
    finish(loaded)
    assert loaded.bus.read_bytes(0x8000_8000, len(RX_BYTES)) == RX_BYTES
    assert original.bus.read_bytes(0x8000_8000, len(RX_BYTES)) == RX_BYTES


# Polls mip.MEIP with interrupts off, then lets a few hundred instructions pass before taking
# the interrupt, so a snapshot can catch the UART's line high and the PLIC's bit pending.
POLL_WAIT = """csrr    t1, mip
    srli    t1, t1, 11
    beqz    t1, wait
    li      t2, 300
3:  addi    t2, t2, -1
    bnez    t2, 3b
    csrsi   mstatus, 8
    nop
    csrci   mstatus, 8"""


def test_a_snapshot_with_the_line_high_loads_without_driving_it():
    stimulus = (Stimulus(100_000, "uart0", b"xyz"),)
    original = rx_machine(0x81, 3, wait=POLL_WAIT, irq_on="", stimulus=stimulus)
    run_until(original, lambda m: uart(m).irq.level, step=20)
    assert uart(original).iir == 0xCC and pending(original)
    assert original.cpu.mip & MIP_MEIP
    data = savevm(original)

    loaded = Machine(original.config)
    calls = []
    plic = loaded.devices["plic"]
    plic.set_input = lambda source, level: calls.append((source, level))  # type: ignore[attr-defined]
    loadvm(loaded, data)
    assert calls == []  # post_load re-derived the level: it did not drive the line
    del plic.set_input  # the class's method again
    assert uart(loaded).irq.level and pending(loaded) and loaded.cpu.mip & MIP_MEIP
    assert digest(loaded) == digest(original)
    finish(original)
    finish(loaded)
    assert digest(loaded) == digest(original) and loaded.cpu.icount == original.cpu.icount
    assert loaded.bus.read_bytes(0x8000_8000, 3) == b"xyz"


def test_a_version_1_section_loads_with_the_rest_at_reset_values():
    m = machine()
    old = {
        "name": "ns16550a",
        "version": 1,
        "fields": {"ier": 0x05, "lcr": 0x03, "mcr": 0x0B, "scr": 0x5A, "divisor": 0x010C},
        "subsections": [],
    }
    u = uart(m)
    load(Uart16550.VMSTATE, u, old)
    assert (u.ier, u.lcr, u.mcr, u.scr, u.divisor) == (0x05, 0x03, 0x0B, 0x5A, 0x010C)
    assert (u.lsr, u.iir, u.fcr, bytes(u.rx_fifo)) == (0x60, 0x01, 0, b"")
    assert u.char_transmit_time == CHAR_TRANSMIT_TIME_RESET and not u.irq.level


def test_a_saved_uart_round_trips_its_fifo_timer_and_flags():
    m = loopback(machine(), fcr=0xC7, ier=0x07)
    send(m, b"hello")
    u = uart(m)
    u.timeout_timer.callback()
    section = save(Uart16550.VMSTATE, u)
    other = machine()
    other.timer_lists[ClockKind.VIRTUAL].changed = False
    load(Uart16550.VMSTATE, uart(other), section)
    v = uart(other)
    assert save(Uart16550.VMSTATE, v) == section
    assert v.timeout_ipending and v.irq.level and v.iir == 0xCC
    assert other.timer_lists[ClockKind.VIRTUAL].changed  # the machine sees the deadline


# -- system reset ---------------------------------------------------------------------------------


def test_a_reset_restores_every_register_but_fcr_as_qemu_does():
    m = loopback(machine(), fcr=0x81, ier=0x05)
    set_divisor(m, 1, 0x03)
    wr(m, SCR, 0x77)
    send(m, b"abc")
    u = uart(m)
    m.system_reset()
    assert [rd(m, offset) for offset in range(8)] == [0, 0, 0x01, 0, 0x08, 0x60, 0xB0, 0]
    assert u.char_transmit_time == CHAR_TRANSMIT_TIME_RESET
    assert not u.rx_fifo and not u.timeout_timer.pending and not u.irq.level
    # FCR is kept: FIFOs on at level 8, but IIR lacks 0xC0 until FCR is written again.
    loopback(m, ier=0x01)
    send(m, b"1234567")
    assert rd(m, LSR) == 0x61 and rd(m, IIR) == 0x01
    send(m, b"8")
    assert rd(m, IIR) == 0x04
    wr(m, FCR, 0x81)
    assert rd(m, IIR) == 0xC4
