"""The PLIC at 0x0c00_0000, register-compatible with QEMU 7.2's sifive_plic as `virt` builds it
for one hart without S-mode (`-cpu rv32,...,s=off,u=off`): hart config "M", so context 0 is
the hart's M-mode context and no other context exists.

Everything below was checked on the reference qemu-system-riscv32 7.2.22 with guest programs
(tests/differential/guests/plic.S):

- The window is 6 MiB (virt reserves contexts for 512 harts x 2 modes): every 4-byte access
  inside it completes, offsets without a register read 0 and ignore writes (context 1, the
  enable words past the third, the gap after the priorities, ...); past it is unmapped.
- Only aligned 4-byte accesses are valid: byte and half-word accesses fault. (A misaligned
  word load is split by the CPU into the two aligned words around it, which may claim.)
- Sources 1..95 have input lines, pending and enable bits (96 sources counting the reserved
  source 0: VIRT_IRQCHIP_NUM_SOURCES). QEMU's priority window starts at source 1 and is 96
  registers long, so source 96 has a priority register (it holds what is written) though it
  has no line, pending or enable bit; source 0's priority reads 0 and ignores writes.
- Priorities and the threshold have 3 bits and are WARL: a write stores `value % 8`.
- The pending words are read-only: writes are ignored (no way to pend a source from the guest).
- Enable words hold all 32 bits as written, bit 0 (source 0) included.
- A claim returns the pending, enabled, unclaimed source with the highest priority above the
  threshold, ties to the lowest id (0 if there is none); it clears the source's pending bit
  and marks it claimed, so it is not offered again until completed.
- A completion (a write of an id below 96 to claim/complete) clears that source's claimed bit
  whether or not the source is enabled or was claimed; larger values are ignored.
- MEIP is re-evaluated after a priority, threshold or claim/complete access and after a line
  is raised, but NOT after an enable write (QEMU's sifive_plic_write does not call
  sifive_plic_update there): after enabling or disabling a pending source, mip.MEIP keeps its
  old level until the next re-evaluation. A read of claim/complete re-evaluates even when it
  returns 0.
- A system reset clears priorities, pending and claimed bits, enables and the threshold, but
  not source 96's priority (apparently QEMU's reset clears its 96-entry priority array and
  source 96's register lies just past it: the window is one register longer than the array).
"""

from __future__ import annotations

from vm.config import DeviceSpec
from vm.csr import MIP_MEIP
from vm.devices import Device, DeviceHost
from vm.vmstate import U32, Array, VMStateDescription

# QEMU virt's PLIC parameters (hw/riscv/virt.c, include/hw/riscv/virt.h).
NUM_SOURCES = 96  # VIRT_IRQCHIP_NUM_SOURCES, counting the reserved source 0
WORDS = NUM_SOURCES // 32  # 32-bit words of the pending, claimed and enable bitmaps
PRIORITY_MASK = 0x7  # VIRT_IRQCHIP_NUM_PRIO_BITS = 3; 7 + 1 is a power of two, so WARL
WINDOW_SIZE = 0x60_0000  # VIRT_PLIC_SIZE(VIRT_CPUS_MAX * 2): context base + 1024 contexts

# Register offsets in the window.
PRIORITY_FIRST = 0x0004  # source 1's priority; source n's is at 4 * n
PRIORITY_LAST = 0x0180  # source 96's: QEMU's priority window is NUM_SOURCES registers long
PENDING_BASE = 0x1000  # WORDS words, source n at bit n % 32 of word n // 32
ENABLE_BASE = 0x2000  # context 0's enable words (the stride to context 1 is 0x80)
THRESHOLD = 0x20_0000  # context 0's priority threshold
CLAIM_COMPLETE = 0x20_0004  # context 0's claim (read) and complete (write)

PENDING_END = PENDING_BASE + 4 * WORDS
ENABLE_END = ENABLE_BASE + 4 * WORDS


class Plic(Device):
    """Interrupt sources 1..95 into the hart's machine external interrupt (mip.MEIP).

    Input lines (`set_input`, where the machine routes `irq_line(n)`): QEMU 7.2.22's
    sifive_plic_irq_request sets the source's pending bit each time the line is driven high
    (also when it already was) and ignores a lowered line, so a pending bit stays set until a
    claim takes it. (Observed on 7.2.22 with the UART's THRE and the RTC's alarm lines. The
    7.2.0 code cleared the bit on a lowered line; upstream a84be2baa9 "hw/intc: Don't clear
    pending bits on IRQ lowering" changed that, and 7.2.22 evidently carries the fix.)
    The PLIC stores the levels it has seen as its own state (pinned), so no device re-pushes
    its line after a snapshot load; with this rule they never change a pending bit.
    """

    kind = "plic"
    size = WINDOW_SIZE
    access_sizes = frozenset({4})

    # The device's whole state, for the vmstate description. Bitmaps are lists of WORDS
    # 32-bit words (bit n % 32 of word n // 32 is source n), as QEMU saves them; `priority`
    # is indexed by source, 0..96 (0 is always 0). `input_levels` is not in QEMU's vmstate
    # (QEMU's devices re-drive their lines); detfuzz's receivers save the levels instead.
    # Everything the guest can observe, input levels included (pinned: the receiver keeps
    # the levels it has seen, so no device re-drives its line after a load). MEIP itself
    # lives in mip, which the CPU section saves, so nothing needs re-deriving on load.
    VMSTATE = VMStateDescription(
        "plic",
        version=1,
        minimum_version=1,
        fields=[
            Array("priority", U32, length=NUM_SOURCES + 1),
            Array("pending", U32, length=WORDS),
            Array("claimed", U32, length=WORDS),
            Array("enable", U32, length=WORDS),
            U32("threshold"),
            Array("input_levels", U32, length=WORDS),
        ],
    )

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        # The levels on the input wires are not the PLIC's to reset: they start low at
        # power-on and only the devices driving them change them.
        self.input_levels = [0] * WORDS
        self.priority = [0] * (NUM_SOURCES + 1)
        self.reset()

    def reset(self) -> None:
        """QEMU's sifive_plic_reset: every register to 0 (but source 96's priority, which
        QEMU keeps, see the module docstring), MEIP lowered."""
        self.priority[:NUM_SOURCES] = [0] * NUM_SOURCES
        self.pending = [0] * WORDS
        self.claimed = [0] * WORDS
        self.enable = [0] * WORDS
        self.threshold = 0
        self.host.set_cpu_irq(MIP_MEIP, level=False)

    # -- input lines ----------------------------------------------------------------------

    def set_input(self, source: int, level: bool) -> None:  # noqa: FBT001 - a line level
        if not 1 <= source < NUM_SOURCES:
            raise ValueError(f"PLIC source {source} is not in 1..{NUM_SOURCES - 1}")
        word, bit = source >> 5, 1 << (source & 31)
        if level:
            self.input_levels[word] |= bit
            self.pending[word] |= bit
            self._update()
        else:
            # QEMU 7.2.22 ignores a lowered line: the pending bit stays until claimed.
            self.input_levels[word] &= ~bit

    # -- MMIO -----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        del size  # always 4 (access_sizes), and aligned: the bus splits misaligned loads
        if PRIORITY_FIRST <= offset <= PRIORITY_LAST:
            return self.priority[offset >> 2]
        if PENDING_BASE <= offset < PENDING_END:
            return self.pending[(offset - PENDING_BASE) >> 2]
        if ENABLE_BASE <= offset < ENABLE_END:
            return self.enable[(offset - ENABLE_BASE) >> 2]
        if offset == THRESHOLD:
            return self.threshold
        if offset == CLAIM_COMPLETE:
            return self._claim()
        return 0  # no register here (QEMU logs a guest error and reads 0)

    def write(self, offset: int, size: int, value: int) -> None:
        del size
        if PRIORITY_FIRST <= offset <= PRIORITY_LAST:
            self.priority[offset >> 2] = value & PRIORITY_MASK
            self._update()
        elif ENABLE_BASE <= offset < ENABLE_END:
            # No re-evaluation here: QEMU's sifive_plic_write returns without updating MEIP.
            self.enable[(offset - ENABLE_BASE) >> 2] = value
        elif offset == THRESHOLD:
            self.threshold = value & PRIORITY_MASK
            self._update()
        elif offset == CLAIM_COMPLETE and value < NUM_SOURCES:
            # QEMU ends the claim whatever the source's enable bit (the spec would ignore a
            # completion for a disabled source); an id of 96 or more is ignored.
            self.claimed[value >> 5] &= ~(1 << (value & 31))
            self._update()
        # Anything else (the pending words included) ignores writes, as in QEMU.

    # -- claims ---------------------------------------------------------------------------

    def _best(self) -> int:
        """The source a claim would return now: the highest priority above the threshold
        among pending, enabled, unclaimed sources, ties to the lowest id; 0 for none."""
        best, best_priority = 0, self.threshold
        for word in range(WORDS):
            candidates = self.pending[word] & ~self.claimed[word] & self.enable[word]
            while candidates:
                low = candidates & -candidates
                source = (word << 5) + low.bit_length() - 1
                if self.priority[source] > best_priority:
                    best, best_priority = source, self.priority[source]
                candidates ^= low
        return best

    def _claim(self) -> int:
        source = self._best()
        if source:
            bit = 1 << (source & 31)
            self.pending[source >> 5] &= ~bit
            self.claimed[source >> 5] |= bit
        self._update()
        return source

    def _update(self) -> None:
        """Drive MEIP from whether a claim would return a source now."""
        self.host.set_cpu_irq(MIP_MEIP, level=self._best() != 0)
