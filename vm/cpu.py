"""The hart's architectural state, CSR access rules, trap entry and interrupt delivery.

Instruction semantics live in `vm.semantics` (as code templates the translator stitches
together); this module owns everything that happens *around* instructions: CSRs, traps,
interrupts and the two instruction counters.

Two counts, two rules (pinned):
- `icount` counts instructions the way QEMU's `-icount` does. ECALL, EBREAK, instructions
  illegal at decode and jumps to a misaligned target count; an instruction that faults while
  executing (an access fault, an illegal CSR access) does not. Virtual time derives from it.
- minstret follows the spec: an instruction that traps does not retire. We keep
  `nonretired`, the number of counted-but-trapping instructions, so that
  retired = icount - nonretired. mcycle counts one cycle per counted instruction.
  Writes to either counter take effect as an offset ("the write is done instead of the
  increment").
"""

from __future__ import annotations

from vm.csr import (
    CSR_NUMBERS,
    INTERRUPT_PRIORITY,
    MARCHID_VALUE,
    MCAUSE_INTERRUPT,
    MHARTID_VALUE,
    MIE_WRITABLE,
    MIMPID_VALUE,
    MISA_VALUE,
    MSTATUS_MIE,
    MSTATUS_MPIE,
    MSTATUS_MPP_M,
    MSTATUS_WRITABLE,
    MVENDORID_VALUE,
    Cause,
    Csr,
    is_read_only,
)

MASK32 = 0xFFFF_FFFF
MASK64 = (1 << 64) - 1


class GuestTrap(Exception):
    """A synchronous exception raised while executing an instruction (cause, mtval)."""

    __slots__ = ("cause", "tval")

    def __init__(self, cause: int, tval: int = 0) -> None:
        super().__init__(cause, tval)
        self.cause = cause
        self.tval = tval & MASK32


class CsrOp:
    """The three CSR access operations (CSRRW/CSRRS/CSRRC and their immediate forms)."""

    WRITE = 0
    SET = 1
    CLEAR = 2


class CpuState:
    """Everything a hart holds. Registers are unsigned 32-bit ints; x[0] stays 0.

    Invariant: `irq_pending` is True exactly when mstatus.MIE is set and mip & mie != 0;
    every mutator of those three keeps it so, so the run loop tests one attribute.
    """

    __slots__ = (
        "fault_loop",
        "halted",
        "icount",
        "irq_pending",
        "last_trap_retired",
        "last_trap_target",
        "leave_block",
        "mcause",
        "mcycle_delta",
        "mepc",
        "mie",
        "minstret_delta",
        "mip",
        "mscratch",
        "mstatus",
        "mtval",
        "mtvec",
        "nonretired",
        "pc",
        "x",
    )

    def __init__(self) -> None:
        self.x: list[int] = [0] * 32
        self.pc = 0
        self.icount = 0
        self.nonretired = 0
        self.mstatus = 0  # only MIE/MPIE are stored; MPP reads as M
        self.mie = 0
        self.mip = 0
        self.mtvec = 0
        self.mscratch = 0
        self.mepc = 0
        self.mcause = 0
        self.mtval = 0
        self.mcycle_delta = 0
        self.minstret_delta = 0
        self.irq_pending = False
        self.halted = False  # in WFI, waiting for mip & mie
        self.fault_loop = False
        # Set by the interpreter's slow memory paths: the run loop must look at once.
        self.leave_block = False
        self.last_trap_target = -1
        self.last_trap_retired = -1

    def reset(self) -> None:
        """What QEMU 7.2's CPU reset changes on an M-only hart: MIE and mcause cleared, out
        of WFI. GPRs and the other CSRs keep their values; the caller sets the pc."""
        self.mstatus &= ~MSTATUS_MIE
        self.mcause = 0
        self.halted = False
        self.fault_loop = False
        self.update_irq_pending()

    # -- counters ---------------------------------------------------------------------

    @property
    def retired(self) -> int:
        return self.icount - self.nonretired

    def minstret64(self) -> int:
        return (self.retired + self.minstret_delta) & MASK64

    def mcycle64(self) -> int:
        return (self.icount + self.mcycle_delta) & MASK64

    # -- interrupts -------------------------------------------------------------------

    def update_irq_pending(self) -> None:
        self.irq_pending = bool(self.mstatus & MSTATUS_MIE) and bool(self.mip & self.mie)

    def set_mip_bit(self, bit: int, *, level: bool) -> None:
        """Drive one interrupt-pending line (MSIP/MTIP/MEIP); devices call this."""
        if level:
            self.mip |= bit
        else:
            self.mip &= ~bit
        self.update_irq_pending()

    def take_interrupt(self) -> bool:
        """Enter the highest-priority pending enabled interrupt, at an instruction boundary."""
        if not self.irq_pending:
            return False
        active = self.mip & self.mie
        for irq in INTERRUPT_PRIORITY:
            if active & (1 << irq):
                self._enter(MCAUSE_INTERRUPT | irq, 0, vector=int(irq))
                return True
        return False  # pragma: no cover - irq_pending implies a bit above

    # -- exceptions -------------------------------------------------------------------

    def enter_exception(self, cause: int, tval: int, pc: int) -> int:
        """Take a synchronous exception raised by the instruction at `pc`; return the new pc.

        A handler whose very first instruction faults again, before anything retired,
        would loop forever without progress: flag it so the run loop stops cleanly.
        """
        retired = self.retired
        if pc == self.last_trap_target and retired == self.last_trap_retired:
            self.fault_loop = True
        self.pc = pc
        self._enter(cause, tval, vector=None)
        self.last_trap_target = self.pc
        self.last_trap_retired = retired
        return self.pc

    def _enter(self, cause: int, tval: int, *, vector: int | None) -> None:
        self.mepc = self.pc & ~3 & MASK32
        self.mcause = int(cause)  # a plain int, as a loaded snapshot holds (never a Cause)
        self.mtval = tval & MASK32
        mie = self.mstatus & MSTATUS_MIE
        self.mstatus = MSTATUS_MPIE if mie else 0
        self.halted = False
        base = self.mtvec & ~3 & MASK32
        if vector is not None and self.mtvec & 1:
            self.pc = (base + 4 * vector) & MASK32
        else:
            self.pc = base
        self.update_irq_pending()

    def mret(self) -> int:
        """MIE <- MPIE, MPIE <- 1, MPP stays M; return mepc."""
        self.mstatus = MSTATUS_MPIE | (MSTATUS_MIE if self.mstatus & MSTATUS_MPIE else 0)
        self.update_irq_pending()
        return self.mepc

    # -- CSRs -------------------------------------------------------------------------

    def csr_access(self, number: int, op: int, value: int, *, write: bool) -> int:
        """Execute one CSR instruction's access; return the old value for rd.

        `write` is False for CSRRS/CSRRC with rs1 = x0 (or uimm = 0), which must not write
        and so may target read-only CSRs. Raises GuestTrap(ILLEGAL_INSN) for a CSR detfuzz
        does not implement or a write to a read-only one; the caller supplies mtval.
        `self.icount` is the count *before* this instruction.
        """
        if number not in CSR_NUMBERS or (write and is_read_only(number)):
            raise GuestTrap(Cause.ILLEGAL_INSN)
        old = self.csr_read(number)
        if write:
            if op == CsrOp.WRITE:
                new = value
            elif op == CsrOp.SET:
                new = old | value
            else:
                new = old & ~value
            self._csr_write(number, new & MASK32)
        return old

    def csr_read(self, number: int) -> int:
        reader = _READERS[number]
        return reader(self) & MASK32

    def _csr_write(self, number: int, value: int) -> None:
        writer = _WRITERS.get(number)
        if writer is not None:
            writer(self, value)

    def _write_counter(self, *, instret: bool, high: bool, value: int) -> None:
        current = self.minstret64() if instret else self.mcycle64()
        high_part, low_part = (value, current & MASK32) if high else (current >> 32, value)
        new = (high_part << 32) | low_part
        # The write replaces this instruction's own increment: the next read sees `new`.
        if instret:
            self.minstret_delta = new - (self.retired + 1)
        else:
            self.mcycle_delta = new - (self.icount + 1)


def _write_mstatus(cpu: CpuState, value: int) -> None:
    cpu.mstatus = value & MSTATUS_WRITABLE
    cpu.update_irq_pending()


def _write_mie(cpu: CpuState, value: int) -> None:
    cpu.mie = value & MIE_WRITABLE
    cpu.update_irq_pending()


def _write_mtvec(cpu: CpuState, value: int) -> None:
    # Modes 2 and 3 are reserved; QEMU 7.2 ignores such a write entirely, and so do we.
    if value & 3 < 2:
        cpu.mtvec = value


def _set(attr: str):  # type: ignore[no-untyped-def]
    def write(cpu: CpuState, value: int) -> None:
        setattr(cpu, attr, value)

    return write


_READERS = {
    Csr.MSTATUS: lambda c: c.mstatus | MSTATUS_MPP_M,
    Csr.MISA: lambda c: MISA_VALUE,
    Csr.MIE: lambda c: c.mie,
    Csr.MTVEC: lambda c: c.mtvec,
    Csr.MSCRATCH: lambda c: c.mscratch,
    Csr.MEPC: lambda c: c.mepc,
    Csr.MCAUSE: lambda c: c.mcause,
    Csr.MTVAL: lambda c: c.mtval,
    Csr.MIP: lambda c: c.mip,
    Csr.MCYCLE: lambda c: c.mcycle64(),
    Csr.MCYCLEH: lambda c: c.mcycle64() >> 32,
    Csr.MINSTRET: lambda c: c.minstret64(),
    Csr.MINSTRETH: lambda c: c.minstret64() >> 32,
    Csr.CYCLE: lambda c: c.mcycle64(),
    Csr.CYCLEH: lambda c: c.mcycle64() >> 32,
    Csr.INSTRET: lambda c: c.minstret64(),
    Csr.INSTRETH: lambda c: c.minstret64() >> 32,
    Csr.MVENDORID: lambda c: MVENDORID_VALUE,
    Csr.MARCHID: lambda c: MARCHID_VALUE,
    Csr.MIMPID: lambda c: MIMPID_VALUE,
    Csr.MHARTID: lambda c: MHARTID_VALUE,
}

# Writers of the read-write CSRs. misa and mip are writable CSR numbers whose bits are all
# read-only here (mip's bits are driven by devices): writes are accepted and ignored.
_WRITERS = {
    Csr.MSTATUS: _write_mstatus,
    Csr.MIE: _write_mie,
    Csr.MTVEC: _write_mtvec,
    Csr.MSCRATCH: _set("mscratch"),
    # IALIGN is 32: the spec makes mepc[1:0] always zero (QEMU 7.2 keeps them; README).
    Csr.MEPC: lambda c, v: setattr(c, "mepc", v & ~3),
    Csr.MCAUSE: _set("mcause"),
    Csr.MTVAL: _set("mtval"),
    Csr.MCYCLE: lambda c, v: c._write_counter(instret=False, high=False, value=v),
    Csr.MCYCLEH: lambda c, v: c._write_counter(instret=False, high=True, value=v),
    Csr.MINSTRET: lambda c, v: c._write_counter(instret=True, high=False, value=v),
    Csr.MINSTRETH: lambda c, v: c._write_counter(instret=True, high=True, value=v),
}

assert set(_READERS) == set(Csr), "every implemented CSR needs a reader"
