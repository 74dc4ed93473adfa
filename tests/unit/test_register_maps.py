"""The register maps in vm/DEVICES.md agree with the device modules (the page stays true).

Each device's table must name every register-offset constant of its module, at that
constant's offset, and the reset values it states must be what the device reads after
power-on. A module declares its register offsets as one block of consecutive `NAME = int`
lines (no blank or comment line between them); REGISTER_BLOCKS names the first of each.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from vm import Machine, MachineConfig
from vm.boot import (
    FW_DYNAMIC_MAGIC,
    FW_DYNAMIC_NEXT_MODE_S,
    FW_DYNAMIC_VERSION,
    RESET_VECTOR_INSNS,
    ROM_BASE,
    ROM_SIZE,
    fdt_address,
    reset_vector,
)
from vm.config import DEFAULT_DEVICES
from vm.devices import block, clint, entropy, finisher, nic, plic, rtc, uart
from vm.devices.registry import BUILTIN_DEVICES
from vm.stop import StopReason

DOC = Path(__file__).resolve().parents[2] / "vm" / "DEVICES.md"

# Module -> the first constant of its block of register offsets.
REGISTER_BLOCKS: dict[ModuleType, str] = {
    uart: "RBR_THR_DLL",
    plic: "PRIORITY_FIRST",
    clint: "MSIP",
    rtc: "TIME_LOW",
    entropy: "MAGIC",
    block: "MAGIC",
    nic: "MAGIC",
}
# Range rows whose last register has no constant of its own: (module, first) -> last offset.
RANGE_LAST = {
    (plic, "PENDING_BASE"): plic.PENDING_END - 4,
    (plic, "ENABLE_BASE"): plic.ENABLE_END - 4,
}
ACCESS = {"RO", "WO", "RW", "W1C", "R: IIR, W: FCR"}
EN_DASH = "\u2013"  # between the offsets of a range row
NUMBER = re.compile(r"^(0x[0-9A-Fa-f_]+|\d+)(?![\w.])")


# -- the page -----------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table in `text`, as rows keyed by the header cells."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header, i = _cells(lines[i]), i + 2
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = _cells(lines[i])
                assert len(cells) == len(header), f"ragged table row: {lines[i]}"
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _section() -> str:
    text = DOC.read_text()
    return text[text.index("\n## Register maps\n") :]


def _device_table(path: str) -> list[dict[str, str]]:
    """The table under the `### ...` heading that names `path`."""
    for part in _section().split("\n### ")[1:]:
        heading = part.splitlines()[0]
        if f"(`{path}`)" in heading:
            (table,) = _tables(part)
            return table
    raise AssertionError(f"no register map for {path} in {DOC}")


def _module_path(module: ModuleType) -> str:
    return module.__name__.replace(".", "/") + ".py"


def _offsets(cell: str) -> tuple[int, int]:
    """`0x10`, or a range `0x1000`, en dash, `0x1008`, as (first, last)."""
    first, _, last = cell.partition(EN_DASH)
    return int(first, 16), int(last or first, 16)


def _number(cell: str) -> int | None:
    match = NUMBER.match(cell)
    return None if match is None else int(match.group(1).replace("_", ""), 0)


# -- the modules --------------------------------------------------------------------------


def register_constants(module: ModuleType) -> dict[str, int]:
    """The module's block of register offsets: consecutive `NAME = int` lines from the first."""
    body = ast.parse(inspect.getsource(module)).body
    start = next(
        i
        for i, node in enumerate(body)
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == [REGISTER_BLOCKS[module]]
    )
    found: dict[str, int] = {}
    previous_end = body[start].lineno - 1
    for node in body[start:]:
        if not (
            node.lineno == previous_end + 1
            and isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and type(node.value.value) is int
        ):
            break
        found[node.targets[0].id] = node.value.value
        previous_end = node.end_lineno or node.lineno
    return found


def _device_class(module: ModuleType) -> type:
    (cls,) = [cls for cls in BUILTIN_DEVICES.values() if cls.__module__ == module.__name__]
    return cls


MODULES = pytest.mark.parametrize("module", list(REGISTER_BLOCKS), ids=lambda m: m.__name__)


@MODULES
def test_the_register_blocks_are_offsets_in_the_window(module):
    registers = register_constants(module)
    cls = _device_class(module)
    values = list(registers.values())
    assert len(values) > 1 and values == sorted(set(values))
    assert all(value == getattr(module, name) for name, value in registers.items())
    assert all(0 <= value < cls.size for value in values)
    if min(cls.access_sizes) == 4:
        assert all(value % 4 == 0 for value in values)


def test_the_nics_own_register_tables_are_in_its_block():
    # nic.py keeps tables of its readable registers; they must be offsets the block holds.
    offsets = set(register_constants(nic).values())
    assert set(nic._CONSTANTS) | set(nic._READABLE) <= offsets


# -- the page against the modules ---------------------------------------------------------


@MODULES
def test_every_documented_offset_is_its_constant(module):
    registers = register_constants(module)
    for row in _device_table(_module_path(module)):
        names = re.findall(r"`(\w+)`", row["name"])
        first, last = _offsets(row["offset"])
        assert names and names[0] in registers, f"{row['name']}: not a register constant"
        assert registers[names[0]] == first, f"{names[0]} is {registers[names[0]]:#x}"
        if len(names) > 1:
            assert names[1] in registers and len(names) == 2, row["name"]
            assert registers[names[1]] == last, f"{names[1]} is {registers[names[1]]:#x}"
        elif first != last:
            assert RANGE_LAST.get((module, names[0])) == last, f"{names[0]}: range end {last:#x}"
        assert row["access"] in ACCESS, row["access"]


@MODULES
def test_every_register_constant_is_documented(module):
    documented = {
        name
        for row in _device_table(_module_path(module))
        for name in re.findall(r"`(\w+)`", row["name"])
    }
    assert set(register_constants(module)) == documented


def _machine() -> Machine:
    specs = (entropy.default_spec(), block.default_spec(), nic.default_spec())
    return Machine(MachineConfig(devices=DEFAULT_DEVICES + specs))


@MODULES
def test_the_documented_reset_values_are_read_after_power_on(module):
    cls = _device_class(module)
    (device,) = [d for d in _machine().devices.values() if type(d) is cls]
    width = min(cls.access_sizes | {4})
    checked = 0
    for row in _device_table(_module_path(module)):
        expected = _number(row["reset"])
        if expected is None:
            continue
        for offset in sorted(set(_offsets(row["offset"]))):
            assert device.read(offset, width) == expected, f"{row['name']} at {offset:#x}"
            checked += 1
    assert checked


def test_the_summary_table_matches_the_classes_and_default_addresses():
    (summary, *_) = _tables(_section())
    specs = {s.kind: s for s in DEFAULT_DEVICES}
    specs.update(
        {m.KIND: m.default_spec() for m in (entropy, block, nic)}  # not in the default map
    )
    kinds = set()
    for row in summary:
        kind = row["kind"].strip("`")
        sizes = {int(n) for n in row["access sizes"].split(",")}
        if kind == "-":
            assert row["device"] == "boot ROM"
            assert (int(row["base"], 16), int(row["window"], 16)) == (ROM_BASE, ROM_SIZE)
            continue
        kinds.add(kind)
        cls, spec = BUILTIN_DEVICES[kind], specs[kind]
        assert (int(row["window"], 16), sizes) == (cls.size, set(cls.access_sizes)), kind
        assert int(row["base"], 16) == spec.base, kind
        if spec.irq is None:
            assert not row["IRQ"].isdigit(), kind
        else:
            assert row["IRQ"] == str(spec.irq), kind
    assert kinds == set(BUILTIN_DEVICES)


# -- the devices without offset constants -------------------------------------------------


class _StopRecorder:
    def __init__(self) -> None:
        self.stops: list[tuple[StopReason, int | None]] = []

    def request_stop(self, reason: StopReason, *, code: int | None = None) -> None:
        self.stops.append((reason, code))


def test_the_finisher_table():
    (row,) = _device_table(_module_path(finisher))
    assert _offsets(row["offset"]) == (0, 0) and row["access"] == "WO"
    for name in ("FINISHER_PASS", "FINISHER_FAIL", "FINISHER_RESET"):
        match = re.search(rf"`{name}` (0x[0-9A-Fa-f_]+)", row["read / write"])
        assert match is not None and int(match.group(1), 16) == getattr(finisher, name), name
    host = _StopRecorder()
    spec = next(s for s in DEFAULT_DEVICES if s.kind == finisher.SifiveTest.kind)
    device = finisher.SifiveTest(host, spec)  # type: ignore[arg-type]
    device.write(4, 4, finisher.FINISHER_PASS)  # another offset: ignored
    device.write(0, 4, 0x1234)  # another value: ignored
    device.write(0, 4, (7 << 16) | finisher.FINISHER_FAIL)
    assert host.stops == [(StopReason.FINISHER_FAIL, 7)]
    assert device.read(0, 4) == 0


def test_the_boot_rom_table():
    entry, ram_end = 0x8000_1234, 0x8080_0000
    rom = reset_vector(entry=entry, ram_end=ram_end)
    words = [int.from_bytes(rom[i : i + 4], "little") for i in range(0, len(rom), 4)]
    expected = {
        "start": entry,
        "fdt_laddr": fdt_address(ram_end),
        "magic": FW_DYNAMIC_MAGIC,
        "version": FW_DYNAMIC_VERSION,
        "next_addr": entry,
        "next_mode": FW_DYNAMIC_NEXT_MODE_S,
        "options": 0,
        "boot_hart": 0,
    }
    table = _device_table("vm/boot.py")
    vector, *fields = table
    assert _offsets(vector["offset"]) == (0, 4 * (RESET_VECTOR_INSNS - 1))
    assert [row["name"] for row in fields] == list(expected)
    for row in fields:
        offset, _ = _offsets(row["offset"])
        assert words[offset // 4] == expected[row["name"]], row["name"]
        stated = _number(row["content"])
        assert stated is None or stated == expected[row["name"]], row["name"]
    assert _offsets(fields[-1]["offset"])[0] == len(rom) - 4  # then zeros
