"""Program loading as QEMU's `-kernel` does it with `-bios none`: ELF32 or a flat binary.

An ELF's PT_LOAD segments go to their physical addresses and the hart starts at e_entry; a
flat binary goes to the start of RAM and starts there. Either way the hart boots through the
reset vector at 0x1000. Bad files raise `LoadError` with one clear line.
"""

from __future__ import annotations

import struct

from vm.machine import Machine
from vm.memory import RAM_BASE

ELF_MAGIC = b"\x7fELF"
ELFCLASS32 = 1
ELFDATA2LSB = 1
EM_RISCV = 243
ET_EXEC = 2
PT_LOAD = 1
_EHDR = struct.Struct("<16sHHIIIIIHHHHHH")
_PHDR = struct.Struct("<IIIIIIII")


class LoadError(ValueError):
    """The program file cannot be loaded; the message says why in one line."""


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def load_program(machine: Machine, data: bytes) -> int:
    """Load an ELF32 or flat binary into `machine`, reset it to boot it; return the entry."""
    entry = load_elf(machine, data) if is_elf(data) else load_flat(machine, data)
    machine.boot(entry)
    return entry


def load_flat(machine: Machine, data: bytes) -> int:
    if not data:
        raise LoadError("the program is empty")
    if len(data) > machine.config.ram_size:
        raise LoadError(
            f"the flat binary ({len(data)} bytes) is larger than RAM ({machine.config.ram_size})"
        )
    machine.load_image(RAM_BASE, data)
    return RAM_BASE


def load_elf(machine: Machine, data: bytes) -> int:
    if len(data) < _EHDR.size:
        raise LoadError("truncated ELF header")
    (ident, e_type, e_machine, _version, e_entry, e_phoff, _shoff, _flags, _ehsize,
     e_phentsize, e_phnum, _shentsize, _shnum, _shstrndx) = _EHDR.unpack_from(data)  # fmt: skip
    if ident[4] != ELFCLASS32:
        raise LoadError("not a 32-bit ELF (detfuzz runs RV32 programs)")
    if ident[5] != ELFDATA2LSB:
        raise LoadError("not a little-endian ELF")
    if e_machine != EM_RISCV:
        raise LoadError(f"not a RISC-V ELF (e_machine {e_machine})")
    if e_type != ET_EXEC:
        raise LoadError(f"not an executable ELF (e_type {e_type})")
    if e_phentsize != _PHDR.size or e_phoff + e_phnum * _PHDR.size > len(data):
        raise LoadError("truncated or malformed ELF program headers")
    loaded = 0
    for index in range(e_phnum):
        (p_type, p_offset, _vaddr, p_paddr, p_filesz, p_memsz, _flags,
         _align) = _PHDR.unpack_from(data, e_phoff + index * _PHDR.size)  # fmt: skip
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz or p_offset + p_filesz > len(data):
            raise LoadError(f"ELF segment {index} is truncated or malformed")
        if not machine.bus.is_ram(p_paddr, p_memsz):
            raise LoadError(
                f"ELF segment {index} at {p_paddr:#x}+{p_memsz:#x} does not fit in RAM "
                f"({RAM_BASE:#x}+{machine.config.ram_size:#x})"
            )
        # RAM starts zeroed, but a segment may be loaded over earlier data: clear the bss.
        segment = data[p_offset : p_offset + p_filesz] + bytes(p_memsz - p_filesz)
        machine.load_image(p_paddr, segment)
        loaded += 1
    if not loaded:
        raise LoadError("the ELF has no loadable segments")
    return e_entry
