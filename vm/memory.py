"""The physical address space: RAM, the boot ROM and MMIO regions dispatched to devices.

Pinned: every writer (CPU stores, device DMA, loaders, loadvm) goes through `write` or
`write_bytes`, which mark pages dirty and invalidate translated code. Translated code takes a
fast path only for pages where that bookkeeping is already done: `write_fast[page]` is 1
exactly when the page is RAM, already dirty and holds no translated code, so skipping the slow
path there changes nothing.
"""

from __future__ import annotations

import mmap
import sys
from collections.abc import Callable
from typing import Protocol

from vm.cpu import GuestTrap
from vm.csr import Cause

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
ADDRESS_PAGES = 1 << (32 - PAGE_SHIFT)
RAM_BASE = 0x8000_0000

if sys.byteorder != "little":  # pragma: no cover - the word views below assume it
    raise ImportError("detfuzz's RAM word views need a little-endian host")


class MmioDevice(Protocol):
    """What the bus needs from a device: sized reads and writes at an offset."""

    access_sizes: frozenset[int]

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


MmioObserver = Callable[[str, str, int, int, int], None]


class Region:
    """One MMIO window [base, base + size) served by `device`."""

    __slots__ = ("base", "device", "end", "name")

    def __init__(self, name: str, base: int, size: int, device: MmioDevice) -> None:
        self.name = name
        self.base = base
        self.end = base + size
        self.device = device


class Bus:
    """RAM at `RAM_BASE`, a read-only boot ROM, and MMIO regions; unmapped accesses fault."""

    def __init__(self, *, ram_size: int, rom_base: int, rom_size: int) -> None:
        if ram_size <= 0 or ram_size % PAGE_SIZE or RAM_BASE + ram_size > 1 << 32:
            raise ValueError(f"RAM size must be a positive multiple of 4 KiB, got {ram_size}")
        self.ram_size = ram_size
        # An anonymous mapping: zero-filled lazily by the kernel, so a fresh machine costs
        # microseconds whatever its RAM size (fuzzing builds many short-lived machines).
        self.ram = mmap.mmap(-1, ram_size)
        self.ram_words = memoryview(self.ram).cast("I")
        self.ram_halves = memoryview(self.ram).cast("H")
        self.rom_base = rom_base
        self.rom = bytearray(rom_size)
        self.regions: list[Region] = []
        first_page = RAM_BASE >> PAGE_SHIFT
        self.ram_pages = range(first_page, first_page + (ram_size >> PAGE_SHIFT))
        # Indexed by address >> 12 across the whole 32-bit space, so the translated fast
        # path needs one index and no range check.
        self.read_fast = bytearray(ADDRESS_PAGES)
        self.read_fast[self.ram_pages.start : self.ram_pages.stop] = b"\x01" * len(self.ram_pages)
        self.write_fast = bytearray(ADDRESS_PAGES)
        self.dirty_pages: set[int] = set()
        # Every RAM page ever written (never cleared): the others are still the mapping's
        # zeros, so scans for non-zero pages (digests, snapshots) read only these.
        self.written_pages: set[int] = set()
        self.code_pages: set[int] = set()
        # Called with a page number when a write hits a page holding translated code.
        self.on_code_write: Callable[[int], None] = lambda page: None
        # Debugging hook (`detfuzz replay --trace`): called after each access a device
        # serves, as (access "read" or "write", region name, offset, size, value). Only the
        # MMIO path looks at it, so RAM accesses never pay for it.
        self.mmio_observer: MmioObserver | None = None

    # -- map ----------------------------------------------------------------------------

    def map_device(self, name: str, base: int, size: int, device: MmioDevice) -> None:
        end = base + size
        for other in self.regions:
            if base < other.end and other.base < end:
                raise ValueError(f"MMIO region {name} overlaps {other.name}")
        if base < RAM_BASE + self.ram_size and end > RAM_BASE:
            raise ValueError(f"MMIO region {name} overlaps RAM")
        self.regions.append(Region(name, base, size, device))
        self.regions.sort(key=lambda r: r.base)

    def region_at(self, addr: int) -> Region | None:
        for region in self.regions:
            if region.base <= addr < region.end:
                return region
        return None

    @staticmethod
    def _serves(region: Region | None, addr: int, size: int) -> bool:
        return (
            region is not None and addr + size <= region.end and size in region.device.access_sizes
        )

    def is_ram(self, addr: int, size: int) -> bool:
        return addr >= RAM_BASE and addr + size <= RAM_BASE + self.ram_size

    def _in_rom(self, addr: int, size: int) -> bool:
        return self.rom_base <= addr and addr + size <= self.rom_base + len(self.rom)

    # -- code ---------------------------------------------------------------------------

    def fetch(self, addr: int) -> int | None:
        """The instruction word at `addr` from RAM or ROM, or None where nothing executes."""
        offset = addr - RAM_BASE
        if 0 <= offset <= self.ram_size - 4:
            return self.ram_words[offset >> 2] if not offset & 3 else None
        if self._in_rom(addr, 4):
            offset = addr - self.rom_base
            return int.from_bytes(self.rom[offset : offset + 4], "little")
        return None

    def mark_code_page(self, page: int) -> None:
        self.code_pages.add(page)
        self.write_fast[page] = 0

    # -- reads --------------------------------------------------------------------------

    def read(self, addr: int, size: int) -> int:
        """A load of `size` bytes (1, 2 or 4; any alignment, as QEMU completes them in M-mode)."""
        if self.is_ram(addr, size):
            offset = addr - RAM_BASE
            return int.from_bytes(self.ram[offset : offset + size], "little")
        if size > 1 and addr & (size - 1):
            return self._read_split(addr, size)
        region = self.region_at(addr)
        if self._serves(region, addr, size):
            assert region is not None  # _serves checked it
            value = region.device.read(addr - region.base, size)
            if self.mmio_observer is not None:
                self.mmio_observer("read", region.name, addr - region.base, size, value)
            return value
        if self._in_rom(addr, size):
            offset = addr - self.rom_base
            return int.from_bytes(self.rom[offset : offset + size], "little")
        raise GuestTrap(Cause.LOAD_ACCESS_FAULT, addr)

    def _read_split(self, addr: int, size: int) -> int:
        """A misaligned load not wholly in RAM. QEMU's TCG loads the two aligned parts around
        it and combines them (little-endian); a part that faults reports its own address."""
        low = addr & ~(size - 1)
        shift = (addr - low) * 8
        first = self.read(low, size)
        second = self.read(low + size, size)
        return ((first >> shift) | (second << (size * 8 - shift))) & ((1 << (size * 8)) - 1)

    def _mapped(self, addr: int, size: int) -> bool:
        region = self.region_at(addr)
        in_region = region is not None and addr + size <= region.end
        return self.is_ram(addr, size) or in_region or self._in_rom(addr, size)

    def read_bytes(self, addr: int, length: int) -> bytes:
        """Host-side bulk read of RAM (loaders, DMA, digests); raises ValueError outside RAM."""
        if not self.is_ram(addr, length):
            raise ValueError(f"{length} bytes at {addr:#x} are not all RAM")
        offset = addr - RAM_BASE
        return bytes(self.ram[offset : offset + length])

    # -- the one write path ---------------------------------------------------------------

    def write(self, addr: int, size: int, value: int) -> None:
        """A store of `size` bytes; the slow path of every CPU store."""
        if self.is_ram(addr, size):
            self.write_bytes(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
            return
        if size > 1 and addr & (size - 1):
            self._write_split(addr, size, value)
            return
        region = self.region_at(addr)
        if self._serves(region, addr, size):
            assert region is not None  # _serves checked it
            value &= (1 << (8 * size)) - 1
            region.device.write(addr - region.base, size, value)
            if self.mmio_observer is not None:
                self.mmio_observer("write", region.name, addr - region.base, size, value)
            return
        if self._in_rom(addr, size):
            return  # QEMU's boot ROM ignores writes
        raise GuestTrap(Cause.STORE_ACCESS_FAULT, addr)

    def _write_split(self, addr: int, size: int, value: int) -> None:
        """A misaligned store not wholly in RAM, as QEMU's TCG does it: when the access
        crosses into another page, that page must be mapped first (else the fault reports
        the second aligned part's address and nothing is stored); then bytes are stored one
        by one in address order, so a byte that faults leaves the earlier ones written."""
        second = (addr & ~(size - 1)) + size
        if (addr ^ (addr + size - 1)) >> PAGE_SHIFT and not self._mapped(second, size):
            raise GuestTrap(Cause.STORE_ACCESS_FAULT, second)
        for index in range(size):
            self.write(addr + index, 1, value >> (8 * index))

    def write_bytes(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write RAM: marks pages dirty, invalidates translated code, then stores the bytes."""
        length = len(data)
        if not self.is_ram(addr, length):
            raise ValueError(f"{length} bytes at {addr:#x} are not all RAM")
        if length == 0:
            return
        for page in range(addr >> PAGE_SHIFT, ((addr + length - 1) >> PAGE_SHIFT) + 1):
            self._note_write(page)
        offset = addr - RAM_BASE
        self.ram[offset : offset + length] = data

    def _note_write(self, page: int) -> None:
        if page in self.code_pages:
            self.code_pages.discard(page)
            self.on_code_write(page)
        self.dirty_pages.add(page)
        self.written_pages.add(page)
        self.write_fast[page] = 1

    def maybe_nonzero_ram_pages(self) -> list[int]:
        """The RAM pages that may hold non-zero bytes (page numbers, ascending)."""
        return sorted(self.written_pages)

    def take_dirty_pages(self) -> set[int]:
        """Return and clear the pages written since the last call (for digests, snapshots)."""
        dirty = self.dirty_pages
        self.dirty_pages = set()
        for page in dirty:
            self.write_fast[page] = 0
        return dirty
