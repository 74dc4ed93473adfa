"""The machine configuration: canonical, hashable, serialisable, validated."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import Machine
from vm.config import (
    DEFAULT_DEVICES,
    ConfigError,
    DeviceSpec,
    MachineConfig,
    canonical_bytes,
    config_hash,
)
from vm.devices import Device
from vm.planted import PLANTED_BUGS

device_specs = st.builds(
    DeviceSpec,
    kind=st.sampled_from(["sifive_test", "clint", "ns16550a", f"{__name__}:Probe"]),
    name=st.text("abcdefgh", min_size=1, max_size=8),
    base=st.integers(0, (1 << 32) - 1),
    irq=st.none() | st.integers(1, 1023),
    options=st.dictionaries(st.text("xyz", min_size=1, max_size=3), st.integers(0, 9)).map(
        lambda d: tuple(sorted(d.items()))
    ),
)


@st.composite
def configs(draw: st.DrawFn) -> MachineConfig:
    devices = tuple(draw(st.lists(device_specs, max_size=4, unique_by=lambda d: d.name)))
    kinds = {device.kind for device in devices}
    # Only bugs the drawn devices allow: a bug needs the device it replaces.
    possible = sorted(n for n, bug in PLANTED_BUGS.items() if bug.replaces in {None, *kinds})
    planted = draw(st.lists(st.sampled_from(possible), unique=True))
    return MachineConfig(
        ram_size=draw(st.integers(1, 64)) * (8 << 10),
        icount_shift=draw(st.integers(0, 10)),
        devices=devices,
        planted_bugs=tuple(sorted(planted)),
    )


class Probe(Device):
    """A user device in its own module, named as module:Class."""

    kind = "probe"
    size = 0x100

    def read(self, offset: int, size: int) -> int:
        del size
        return 0xA5 + offset


@given(configs())
def test_from_dict_inverts_to_dict_through_msgpack(config):
    data = msgpack.unpackb(msgpack.packb(config.to_dict()), raw=False)
    assert MachineConfig.from_dict(data) == config


@given(configs())
def test_equal_configurations_have_equal_hashes_and_bytes(config):
    again = MachineConfig.from_dict(config.to_dict())
    assert canonical_bytes(again) == canonical_bytes(config)
    assert config_hash(again) == config_hash(config)


def test_any_change_changes_the_hash():
    base = MachineConfig()
    variants = [
        MachineConfig(ram_size=16 << 20),
        MachineConfig(icount_shift=3),
        MachineConfig(devices=DEFAULT_DEVICES[:2]),
        MachineConfig(planted_bugs=("uart-rx-timeout-realtime",)),
    ]
    hashes = {config_hash(base), *(config_hash(v) for v in variants)}
    assert len(hashes) == 1 + len(variants)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {},
        {"format": 99},
        {**MachineConfig().to_dict(), "ram_size": "big"},
        {**MachineConfig().to_dict(), "ram_size": 4096},
        {**MachineConfig().to_dict(), "devices": [{"kind": "clint"}]},
        {**MachineConfig().to_dict(), "devices": 7},
        {**MachineConfig().to_dict(), "planted_bugs": ["b", "a"]},
    ],
)
def test_malformed_configurations_raise_config_error(data):
    with pytest.raises(ConfigError):
        MachineConfig.from_dict(data)


def test_duplicate_device_names_are_rejected():
    with pytest.raises(ConfigError, match="unique"):
        MachineConfig(devices=(DEFAULT_DEVICES[0], DEFAULT_DEVICES[0]))


def test_a_user_device_module_is_built_from_module_and_class():
    spec = DeviceSpec(f"{__name__}:Probe", "probe0", 0x1000_3000, irq=7)
    m = Machine(MachineConfig(devices=(*DEFAULT_DEVICES, spec)))
    assert isinstance(m.devices["probe0"], Probe)
    assert m.bus.read(0x1000_3004, 4) == 0xA9


@pytest.mark.parametrize("kind", ["nosuch", "no.such.module:Thing", "vm.config:MachineConfig"])
def test_unknown_device_kinds_are_config_errors(kind):
    with pytest.raises(ConfigError):
        Machine(MachineConfig(devices=(DeviceSpec(kind, "x", 0x1000_3000),)))
