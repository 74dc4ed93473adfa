"""The two baseline engines that detfuzz's emulator is compared with.

Both load a flat image at 0x80000000 and start at the entry point (no reset vector), and
both emulate the two devices the benchmark touches: the ns16550a transmit register at
0x10000000 and the sifive_test finisher at 0x100000. They are written to be *typical*, not
tuned: the point is to reproduce the figures in perf-anchors.md, so that a detfuzz figure
measured next to them on the same host can be read against those anchors.

* ``UnicornHookBaseline``: Unicorn with a ``UC_HOOK_CODE`` Python callback that counts
  instructions. That is the simplest exact-icount design built on Unicorn, and it pays one
  C->Python call per guest instruction.
* ``DecodeInterpreter``: a plain Python RV32IM interpreter that fetches and fully decodes
  every instruction every time it runs it and dispatches with if/elif (opcode, then
  funct3/funct7). It is the floor any Python design has to beat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

RAM_BASE = 0x8000_0000
RAM_SIZE = 1 << 20
UART_BASE = 0x1000_0000
UART_THR = 0  # offset of the transmit holding register (write)
UART_LSR = 5  # offset of the line status register (read)
UART_LSR_IDLE = 0x60  # THR empty and transmitter idle: a polling guest may always write
FINISHER_BASE = 0x10_0000
FINISHER_PASS = 0x5555
FINISHER_FAIL = 0x3333  # low 16 bits; the exit code sits in the high 16
MMIO_PAGE = 0x1000
MASK = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one timed run produced. ``count`` is None for an engine that cannot count."""

    a0: int
    count: int | None
    uart: bytes
    seconds: float  # emulation only: time.perf_counter() around the run call
    finisher: int | None  # value written to the finisher, None if it never was


class StopEmu(Exception):
    """Raised by the finisher store to leave the interpreter loop."""


class GuestFault(RuntimeError):
    """The guest did something this baseline does not model (trap, bad address)."""


def _signed(value: int) -> int:
    return value - (1 << 32) if value & 0x8000_0000 else value


# --- Unicorn with a per-instruction Python hook ---


class UnicornHookBaseline:
    """Unicorn RV32 with ``hook_add(UC_HOOK_CODE, cb)`` counting every instruction.

    The run is one ``emu_start(entry, halt)``: Unicorn stops before executing ``halt``, so
    the count covers everything up to and including the finisher store.
    """

    name = "unicorn_hook"

    def __init__(self, image: bytes, *, entry: int = RAM_BASE, halt: int) -> None:
        # Imported here so that the other engines run where unicorn is not installed.
        from unicorn import UC_ARCH_RISCV, UC_HOOK_CODE, UC_MODE_RISCV32, Uc
        from unicorn.riscv_const import UC_RISCV_REG_A0

        if len(image) > RAM_SIZE:
            raise ValueError(f"image of {len(image)} bytes does not fit in RAM")
        self.entry = entry
        self.halt = halt
        self.uart = bytearray()
        self.finisher: int | None = None
        self.counter = [0]
        self._reg_a0 = UC_RISCV_REG_A0

        uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV32)
        uc.mem_map(RAM_BASE, RAM_SIZE)
        uc.mem_write(RAM_BASE, image)
        # The devices are mmio_map'ped with Python callbacks; they only run at the end.
        uc.mmio_map(UART_BASE, MMIO_PAGE, self._uart_read, None, self._uart_write, None)
        uc.mmio_map(FINISHER_BASE, MMIO_PAGE, self._finisher_read, None, self._finisher_write, None)
        counter = self.counter

        def count_insn(_uc: object, _address: int, _size: int, _data: object) -> None:
            counter[0] += 1

        uc.hook_add(UC_HOOK_CODE, count_insn)
        self.uc = uc

    def _uart_read(self, _uc: object, offset: int, _size: int, _data: object) -> int:
        return UART_LSR_IDLE if offset == UART_LSR else 0

    def _uart_write(self, _uc: object, offset: int, _size: int, value: int, _d: object) -> None:
        if offset == UART_THR:
            self.uart.append(value & 0xFF)

    def _finisher_read(self, _uc: object, _offset: int, _size: int, _data: object) -> int:
        return 0

    def _finisher_write(self, _uc: object, offset: int, _size: int, value: int, _d: object) -> None:
        if offset == 0:
            self.finisher = value

    def run(self) -> RunResult:
        start = time.perf_counter()
        self.uc.emu_start(self.entry, self.halt)
        seconds = time.perf_counter() - start
        return RunResult(
            a0=self.uc.reg_read(self._reg_a0),
            count=self.counter[0],
            uart=bytes(self.uart),
            seconds=seconds,
            finisher=self.finisher,
        )


# --- plain decode-every-time interpreter ---


class DecodeInterpreter:
    """A plain RV32IM interpreter: fetch, full decode and if/elif dispatch every time.

    Machine model: a bytearray RAM with a ``memoryview.cast('I')`` for aligned words,
    registers as a list of 32 unsigned ints, every load and store checked against RAM and
    sent to a slow MMIO path otherwise, and an instruction counter compared with a deadline
    on every instruction. A finisher store raises StopEmu; that store is counted.
    Traps (ECALL, EBREAK, illegal instructions, CSRs) are not modelled: they raise
    GuestFault, since neither benchmark program uses them.
    """

    name = "py_decode"

    def __init__(self, image: bytes, *, entry: int = RAM_BASE) -> None:
        if len(image) > RAM_SIZE:
            raise ValueError(f"image of {len(image)} bytes does not fit in RAM")
        self.ram = bytearray(RAM_SIZE)
        self.ram[: len(image)] = image
        self.words = memoryview(self.ram).cast("I")
        self.x = [0] * 32
        self.pc = entry
        self.count = 0
        self.uart = bytearray()
        self.finisher: int | None = None

    # The slow paths: everything outside RAM, and misaligned RAM accesses.

    def _mmio_load(self, addr: int, size: int) -> int:
        off = addr - RAM_BASE
        if off >= 0 and off + size <= RAM_SIZE:  # misaligned RAM access
            return int.from_bytes(self.ram[off : off + size], "little")
        if UART_BASE <= addr < UART_BASE + 8:
            return UART_LSR_IDLE if addr - UART_BASE == UART_LSR else 0
        if FINISHER_BASE <= addr < FINISHER_BASE + MMIO_PAGE:
            return 0
        raise GuestFault(f"load of {size} bytes from unmapped 0x{addr:08x} at pc 0x{self.pc:08x}")

    def _mmio_store(self, addr: int, size: int, value: int) -> None:
        off = addr - RAM_BASE
        if off >= 0 and off + size <= RAM_SIZE:  # misaligned RAM access
            self.ram[off : off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            return
        if UART_BASE <= addr < UART_BASE + 8:
            if addr == UART_BASE + UART_THR:
                self.uart.append(value & 0xFF)
            return
        if addr == FINISHER_BASE:
            self.finisher = value
            if value & 0xFFFF in (FINISHER_PASS, FINISHER_FAIL):
                raise StopEmu
            return
        raise GuestFault(f"store of {size} bytes to unmapped 0x{addr:08x} at pc 0x{self.pc:08x}")

    def step_until(self, budget: int) -> bool:
        """Run at most ``budget`` instructions; return True if the finisher stopped us."""
        x = self.x
        ram = self.ram
        words = self.words
        pc = self.pc
        count = self.count
        deadline = count + budget
        ram_base = RAM_BASE
        ram_size = RAM_SIZE
        mask = MASK
        try:
            while count < deadline:
                off = pc - ram_base
                if off & 3 or not 0 <= off < ram_size:
                    raise GuestFault(f"instruction fetch from 0x{pc:08x}")
                insn = words[off >> 2]
                # Counted before it runs, so the finisher store that stops us is included.
                count += 1

                # Full decode of the fields every format shares.
                opcode = insn & 0x7F
                rd = (insn >> 7) & 0x1F
                funct3 = (insn >> 12) & 0x7
                rs1 = (insn >> 15) & 0x1F
                rs2 = (insn >> 20) & 0x1F
                funct7 = insn >> 25
                next_pc = pc + 4

                if opcode == 0x13:  # OP-IMM
                    imm = (insn >> 20) - 4096 if insn & 0x8000_0000 else insn >> 20
                    a = x[rs1]
                    if funct3 == 0:  # addi
                        value = (a + imm) & mask
                    elif funct3 == 1:  # slli (shamt is the rs2 field)
                        value = (a << rs2) & mask
                    elif funct3 == 2:  # slti
                        value = int(_signed(a) < imm)
                    elif funct3 == 3:  # sltiu
                        value = int(a < (imm & mask))
                    elif funct3 == 4:  # xori
                        value = a ^ (imm & mask)
                    elif funct3 == 5:  # srai if funct7 == 0x20, else srli
                        value = (_signed(a) >> rs2) & mask if funct7 == 0x20 else a >> rs2
                    elif funct3 == 6:  # ori
                        value = a | (imm & mask)
                    else:  # andi
                        value = a & (imm & mask)
                    if rd:
                        x[rd] = value

                elif opcode == 0x33:  # OP and the M extension
                    a = x[rs1]
                    b = x[rs2]
                    if funct7 == 0:
                        if funct3 == 0:  # add
                            value = (a + b) & mask
                        elif funct3 == 1:  # sll
                            value = (a << (b & 31)) & mask
                        elif funct3 == 2:  # slt
                            value = int(_signed(a) < _signed(b))
                        elif funct3 == 3:  # sltu
                            value = int(a < b)
                        elif funct3 == 4:  # xor
                            value = a ^ b
                        elif funct3 == 5:  # srl
                            value = a >> (b & 31)
                        elif funct3 == 6:  # or
                            value = a | b
                        else:  # and
                            value = a & b
                    elif funct7 == 0x20:
                        if funct3 == 0:  # sub
                            value = (a - b) & mask
                        elif funct3 == 5:  # sra
                            value = (_signed(a) >> (b & 31)) & mask
                        else:
                            raise GuestFault(f"illegal instruction 0x{insn:08x} at 0x{pc:08x}")
                    elif funct7 == 1:
                        if funct3 == 0:  # mul
                            value = (a * b) & mask
                        elif funct3 == 1:  # mulh
                            value = ((_signed(a) * _signed(b)) >> 32) & mask
                        elif funct3 == 2:  # mulhsu
                            value = ((_signed(a) * b) >> 32) & mask
                        elif funct3 == 3:  # mulhu
                            value = (a * b) >> 32
                        elif funct3 == 4:  # div: x/0 = -1, overflow gives the dividend
                            sa, sb = _signed(a), _signed(b)
                            if sb == 0:
                                value = mask
                            else:
                                q = abs(sa) // abs(sb)
                                value = (-q if (sa < 0) != (sb < 0) else q) & mask
                        elif funct3 == 5:  # divu
                            value = a // b if b else mask
                        elif funct3 == 6:  # rem: x%0 = x, sign follows the dividend
                            sa, sb = _signed(a), _signed(b)
                            if sb == 0:
                                value = a
                            else:
                                r = abs(sa) % abs(sb)
                                value = (-r if sa < 0 else r) & mask
                        else:  # remu
                            value = a % b if b else a
                    else:
                        raise GuestFault(f"illegal instruction 0x{insn:08x} at 0x{pc:08x}")
                    if rd:
                        x[rd] = value

                elif opcode == 0x03:  # LOAD
                    imm = (insn >> 20) - 4096 if insn & 0x8000_0000 else insn >> 20
                    addr = (x[rs1] + imm) & mask
                    off = addr - ram_base
                    if funct3 == 2:  # lw
                        if off & 3 == 0 and 0 <= off < ram_size:
                            value = words[off >> 2]
                        else:
                            self.pc = pc
                            value = self._mmio_load(addr, 4)
                    elif funct3 in (0, 4):  # lb, lbu
                        if 0 <= off < ram_size:
                            value = ram[off]
                        else:
                            self.pc = pc
                            value = self._mmio_load(addr, 1)
                        if funct3 == 0 and value & 0x80:
                            value |= 0xFFFF_FF00
                    elif funct3 in (1, 5):  # lh, lhu
                        if off & 1 == 0 and 0 <= off < ram_size:
                            value = ram[off] | (ram[off + 1] << 8)
                        else:
                            self.pc = pc
                            value = self._mmio_load(addr, 2)
                        if funct3 == 1 and value & 0x8000:
                            value |= 0xFFFF_0000
                    else:
                        raise GuestFault(f"illegal instruction 0x{insn:08x} at 0x{pc:08x}")
                    if rd:
                        x[rd] = value

                elif opcode == 0x23:  # STORE
                    imm = ((insn >> 20) & 0xFE0) | rd
                    if imm & 0x800:
                        imm -= 4096
                    addr = (x[rs1] + imm) & mask
                    value = x[rs2]
                    off = addr - ram_base
                    if funct3 == 2:  # sw
                        if off & 3 == 0 and 0 <= off < ram_size:
                            words[off >> 2] = value
                        else:
                            self.pc = pc
                            self._mmio_store(addr, 4, value)
                    elif funct3 == 0:  # sb
                        if 0 <= off < ram_size:
                            ram[off] = value & 0xFF
                        else:
                            self.pc = pc
                            self._mmio_store(addr, 1, value)
                    elif funct3 == 1:  # sh
                        if off & 1 == 0 and 0 <= off < ram_size:
                            ram[off] = value & 0xFF
                            ram[off + 1] = (value >> 8) & 0xFF
                        else:
                            self.pc = pc
                            self._mmio_store(addr, 2, value)
                    else:
                        raise GuestFault(f"illegal instruction 0x{insn:08x} at 0x{pc:08x}")

                elif opcode == 0x63:  # BRANCH
                    imm = (
                        ((insn >> 19) & 0x1000)
                        | ((insn << 4) & 0x800)
                        | ((insn >> 20) & 0x7E0)
                        | ((insn >> 7) & 0x1E)
                    )
                    if imm & 0x1000:
                        imm -= 0x2000
                    a = x[rs1]
                    b = x[rs2]
                    if funct3 == 0:  # beq
                        taken = a == b
                    elif funct3 == 1:  # bne
                        taken = a != b
                    elif funct3 == 4:  # blt
                        taken = _signed(a) < _signed(b)
                    elif funct3 == 5:  # bge
                        taken = _signed(a) >= _signed(b)
                    elif funct3 == 6:  # bltu
                        taken = a < b
                    elif funct3 == 7:  # bgeu
                        taken = a >= b
                    else:
                        raise GuestFault(f"illegal instruction 0x{insn:08x} at 0x{pc:08x}")
                    if taken:
                        next_pc = (pc + imm) & mask

                elif opcode == 0x37:  # LUI
                    if rd:
                        x[rd] = insn & 0xFFFF_F000

                elif opcode == 0x17:  # AUIPC
                    if rd:
                        x[rd] = (pc + (insn & 0xFFFF_F000)) & mask

                elif opcode == 0x6F:  # JAL
                    imm = (
                        ((insn >> 11) & 0x10_0000)
                        | (insn & 0xF_F000)
                        | ((insn >> 9) & 0x800)
                        | ((insn >> 20) & 0x7FE)
                    )
                    if imm & 0x10_0000:
                        imm -= 0x20_0000
                    if rd:
                        x[rd] = next_pc
                    next_pc = (pc + imm) & mask

                elif opcode == 0x67 and funct3 == 0:  # JALR
                    imm = (insn >> 20) - 4096 if insn & 0x8000_0000 else insn >> 20
                    target = (x[rs1] + imm) & 0xFFFF_FFFE
                    if rd:
                        x[rd] = next_pc
                    next_pc = target

                elif opcode == 0x0F:  # MISC-MEM: fence, fence.i are no-ops here
                    pass

                else:
                    raise GuestFault(f"unsupported instruction 0x{insn:08x} at 0x{pc:08x}")

                pc = next_pc
        except StopEmu:
            self.pc = pc + 4
            self.count = count
            return True
        self.pc = pc
        self.count = count
        return False

    def run(self, budget: int = 1 << 62) -> RunResult:
        start = time.perf_counter()
        self.step_until(budget)
        seconds = time.perf_counter() - start
        return RunResult(
            a0=self.x[10],
            count=self.count,
            uart=bytes(self.uart),
            seconds=seconds,
            finisher=self.finisher,
        )
