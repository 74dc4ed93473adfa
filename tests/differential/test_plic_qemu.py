"""The PLIC against the reference `qemu-system-riscv32` 7.2 (guests/plic.S).

The guest's register sections need nothing but the PLIC. QEMU ignores writes to the pending
words, so to pend sources (and compare claim order, MEIP and interrupt delivery) the guest
drives two lines of QEMU's virt: UART0's THRE interrupt (source 10) and the goldfish RTC's
alarm (source 11). detfuzz's UART has no interrupt yet and its machine need not have an RTC,
so on detfuzz the guest runs with two stand-ins that drive those lines exactly as QEMU 7.2's
serial.c and goldfish_rtc.c do for the register accesses the guest makes (the comment at the
top of plic.S lists them); everything else about the machine is the default configuration.

The guest also asks for a guest reset (finisher 0x7777); detfuzz's run goes on after it, as
QEMU does, and the guest checks the PLIC's registers on its second boot.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

try:  # tests/differential is a package once its __init__.py exists; a rootdir module before
    from . import qemu_harness as h
except ImportError:  # pragma: no cover - depends on how pytest imports this directory
    import qemu_harness as h  # type: ignore[no-redef]

from vm import Machine, MachineConfig, StopReason
from vm.config import DEFAULT_DEVICES, DeviceSpec
from vm.devices import Device, DeviceHost, IrqLine
from vm.devices.uart import IER_DLM, LCR_DLAB, RBR_THR_DLL, Uart16550
from vm.loader import load_program

pytestmark = pytest.mark.qemu

GUEST = "plic"
SHIFT = 0
RTC_BASE = 0x0010_1000
UART_IRQ = 10
RTC_IRQ = 11
IER_THRI = 0x02
# A guest that asks for more resets than this is looping, not testing.
MAX_RESETS = 4


class ThriUart(Uart16550):
    """UART0 with QEMU 7.2's THRE interrupt on its line (serial.c; the transmitter is always
    empty here, so LSR.THRE is always set). Only IER and THR writes move the line; the
    guest never reads IIR, which on QEMU would clear the THRE interrupt."""

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        assert spec.irq is not None
        self.line = host.irq_line(spec.irq)
        self.thr_ipending = False
        super().__init__(host, spec)

    def reset(self) -> None:
        super().reset()
        self.thr_ipending = False  # serial_reset, which does not drive the line

    def write(self, offset: int, size: int, value: int) -> None:
        register = offset & 7
        dlab = self.lcr & LCR_DLAB
        old_ier = self.ier
        super().write(offset, size, value)
        if dlab:
            return
        if register == IER_DLM:
            changed = old_ier ^ self.ier
            if changed & IER_THRI:
                self.thr_ipending = bool(self.ier & IER_THRI)
            if changed:
                self._update_irq()
        elif register == RBR_THR_DLL:
            # serial_ioport_write: THR written, THRE cleared, the line updated (low); then
            # serial_xmit sends the byte, sets THRE and the THR interrupt, updates again.
            self.thr_ipending = False
            self._update_irq()
            self.thr_ipending = True
            self._update_irq()

    def _update_irq(self) -> None:
        # serial_update_irq drives the line on every call, also when the level is unchanged.
        self.line.set(bool(self.ier & IER_THRI) and self.thr_ipending)


class RtcAlarmLine(Device):
    """The part of QEMU 7.2's goldfish RTC that drives its line, for an alarm set in the
    past: IRQ_ENABLED, ALARM_LOW (which fires at once) and CLEAR_INTERRUPT."""

    kind = "rtc-alarm-line"
    size = 0x1000
    access_sizes = frozenset({4})

    IRQ_ENABLED = 0x10
    ALARM_LOW = 0x08
    CLEAR_INTERRUPT = 0x1C

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        assert spec.irq is not None
        self.line: IrqLine = host.irq_line(spec.irq)
        self.reset()

    def reset(self) -> None:
        self.irq_enabled = False  # goldfish_rtc_reset, which does not drive the line
        self.irq_pending = False

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        if offset == self.IRQ_ENABLED:
            self.irq_enabled = bool(value & 1)
        elif offset == self.ALARM_LOW:  # the guest's alarm (0) is always in the past
            self.irq_pending = True
        elif offset == self.CLEAR_INTERRUPT:
            self.irq_pending = False
        else:
            return
        # goldfish_rtc_update drives the line on every call.
        self.line.set(self.irq_pending and self.irq_enabled)


def line_config() -> MachineConfig:
    """The default machine with the two stand-ins (in place of any RTC already there)."""
    module = __name__
    devices = [spec for spec in DEFAULT_DEVICES if spec.base != RTC_BASE]
    devices = [
        replace(spec, kind=f"{module}:ThriUart", irq=UART_IRQ) if spec.name == "uart0" else spec
        for spec in devices
    ]
    devices.append(DeviceSpec(f"{module}:RtcAlarmLine", "rtc_line", RTC_BASE, irq=RTC_IRQ))
    return MachineConfig(ram_size=h.RAM_SIZE, icount_shift=SHIFT, devices=tuple(devices))


def run_detfuzz_with_lines(elf_bytes: bytes) -> h.Outcome:
    machine = Machine(line_config())
    load_program(machine, elf_bytes)
    remaining = h.DETFUZZ_BUDGET
    for _ in range(MAX_RESETS + 1):
        result = machine.run(remaining)
        remaining -= result.executed
        if result.reason is not StopReason.FINISHER_RESET:
            break  # a reset has already restarted the hart at the reset vector
    if result.reason is StopReason.FINISHER_PASS:
        status = h.PASS
    elif result.reason is StopReason.FINISHER_FAIL:
        status = f"exit:{result.finisher_code}"
    else:
        status = f"stop:{result.reason.value}"
    return h.Outcome(machine.console_output(), status, f"{result} pc={machine.cpu.pc:#010x}")


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> tuple[h.Outcome, h.Outcome]:
    """(QEMU's outcome, detfuzz's outcome) for plic.S, run once per session."""
    h.require_tools()
    builder = h.GuestBuilder(tmp_path_factory.mktemp("plic-guest"))
    elf = builder.build(h.GUEST_DIR / f"{GUEST}.S")
    return h.run_qemu(elf, SHIFT), run_detfuzz_with_lines(elf.read_bytes())


def test_the_guest_runs_to_the_finisher(outcomes: tuple[h.Outcome, h.Outcome]) -> None:
    qemu, det = outcomes
    expected = ["", *h.source_sections(GUEST)]
    assert qemu.status == h.PASS, f"QEMU did not pass: {qemu.status} {qemu.detail}"
    assert list(h.split_sections(qemu.output)) == expected, "QEMU's output lacks sections"
    assert det.status == h.PASS, f"detfuzz did not pass: {det.status} ({det.detail})"
    assert list(h.split_sections(det.output)) == expected, "detfuzz's output lacks sections"


@pytest.mark.parametrize("section", ["", *h.source_sections(GUEST)])
def test_section_matches_qemu(outcomes: tuple[h.Outcome, h.Outcome], section: str) -> None:
    qemu, det = outcomes
    q = h.split_sections(qemu.output).get(section)
    d = h.split_sections(det.output).get(section)
    assert q is not None, f"QEMU never printed section {section!r} ({qemu.status})"
    assert d is not None, f"detfuzz never printed section {section!r} ({det.status})"
    assert q == d, h.diff(q, d)


def _value(output: bytes, section: str, tag: str) -> list[int]:
    return h.tagged_values(h.split_sections(output)[section], tag)


# What the model relies on, pinned on QEMU's own output so that a different reference build
# fails here with a clear message rather than only as a diff.
QEMU_FACTS = [
    ("priority", "prio_96", [7, 0]),  # source 96 has a priority register
    ("priority", "prio_97", [0]),  # source 97 has none
    ("priority", "prio1_after_0x17", [7]),  # WARL: value % 8
    ("pending", "pending_after_write_0x1000", [0]),  # the pending words are read-only
    ("enable", "enable_0x200c", [0]),  # three enable words
    ("threshold", "threshold_after_9", [1]),  # WARL: value % 8
    ("contexts", "ctx_0x201000", [0]),  # no context 1
    ("lines", "pending_rtc_down", [0x800]),  # a lowered line leaves its pending bit
    ("meip", "meip_disabled", [1]),  # an enable write does not re-evaluate MEIP
    ("meip", "meip_enabled", [0]),
    ("claim_order", "claim_tie", [10]),  # ties go to the lowest id
    ("complete", "claim_after_enable", [11]),  # completing a disabled source ends its claim
    ("interrupt", "claimed", [11]),
    ("after_reset", "prio_96", [5]),  # the reset leaves source 96's priority
]


@pytest.mark.parametrize(("section", "tag", "values"), QEMU_FACTS)
def test_qemu_behaves_as_the_model_assumes(
    outcomes: tuple[h.Outcome, h.Outcome], section: str, tag: str, values: list[int]
) -> None:
    qemu, _ = outcomes
    assert _value(qemu.output, section, tag) == values
