"""A scenario: everything one fuzz case is, as plain data (format pinned by SCENARIO_FORMAT).

    scenario = Scenario(config=MachineConfig(), program=source, budget=50_000)
    data = scenario.to_bytes()                     # what reports and the corpus carry
    assert Scenario.from_bytes(data) == scenario
    trace = BuiltinTarget().run(scenario.trace_run(ReplayMode.RECORD))

The machine configuration (devices, user devices as `module:Class` names, planted bugs,
icount shift, RAM), the guest program as assembly source, host stimulus, two host seeds
(A for the none/record runs, B for replays, so a replay meets another host), the host's
profile, stop, snapshot, seek and sample points, the section order of snapshot reloads, the
instruction budget and the swarm features that shaped the program (informational).

The serialised form is a msgpack header map {"magic", "format"} followed by one map with
exactly the keys of `to_dict`. `from_bytes`/`from_dict` treat their input as hostile: every
field is type- and range-checked, every size capped, and nothing is evaluated or imported
(a user device's kind stays a string until a machine is built from the configuration).
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgpack

from fuzzer.wire import (
    WireError,
    describe,
    read_bytes,
    read_int,
    read_list,
    read_map,
    read_optional,
    read_str,
)
from vm.asm import Program, assemble_program
from vm.backends import Stimulus
from vm.config import ConfigError, MachineConfig
from vm.hostmodel import HostProfile
from vm.memory import RAM_BASE
from vm.replay import ReplayMode
from vm.trace import Stop, TargetRun

SCENARIO_FORMAT: Final = 1
MAGIC: Final = b"detfuzz-scenario"
HEADER_KEYS: Final = ("magic", "format")
KEYS: Final = (
    "config",
    "program",
    "stimulus",
    "host_seeds",
    "host_profile",
    "stops",
    "snapshots",
    "seeks",
    "section_order_seed",
    "budget",
    "samples",
    "features",
)
CONFIG_KEYS: Final = ("format", "ram_size", "icount_shift", "devices", "planted_bugs")
DEVICE_KEYS: Final = ("kind", "name", "base", "irq", "options")

# Caps: a scenario is small; anything bigger is hostile or broken.
MAX_BYTES: Final = 8 << 20  # the whole serialised scenario
MAX_PROGRAM_CHARS: Final = 1 << 20
MAX_STIMULUS: Final = 1024  # events
MAX_PAYLOAD: Final = 1 << 16  # bytes per event
MAX_STIMULUS_BYTES: Final = 1 << 20  # all events together
MAX_POINTS: Final = 1024  # stops, snapshots, seeks, samples (each)
MAX_FEATURES: Final = 256
MAX_NAME: Final = 256  # characters of a channel, feature, device or bug name
MAX_DEVICES: Final = 64
MAX_OPTIONS: Final = 32
MAX_BUDGET: Final = 1 << 40
MAX_ICOUNT: Final = 1 << 62
MAX_NS: Final = 1 << 62
MAX_U64: Final = (1 << 64) - 1
MAX_PROFILE_VALUE: Final = 1 << 62

DEFAULT_BUDGET: Final = 50_000
# The first host profile fields of each log-scaled range must be positive (HostModel).
_PROFILE_POSITIVE: Final = ("quantum_insns_min", "stop_ns_min", "block_latency_ns_min")
_PROFILE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(HostProfile))


class ScenarioError(ValueError):
    """A scenario (or its serialised form) is invalid; the message says which field."""


@dataclass(frozen=True)
class Scenario:
    config: MachineConfig
    program: str  # assembly source for vm.asm, assembled at RAM_BASE
    stimulus: tuple[Stimulus, ...] = ()
    host_seeds: tuple[int, int] = (0, 1)  # (A: none/record runs, B: replay runs)
    host_profile: HostProfile | None = None  # None: vm.hostmodel's default
    stops: tuple[Stop, ...] = ()
    snapshots: tuple[int, ...] = ()
    seeks: tuple[int, ...] = ()
    section_order_seed: int = 0
    budget: int = DEFAULT_BUDGET
    samples: tuple[int, ...] = ()
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(self)

    # -- running -------------------------------------------------------------------------

    def assembled(self) -> Program:
        """The program assembled (cached per source); vm.asm.AsmError if it does not."""
        return _assemble(self.program)

    def image(self) -> bytes:
        return self.assembled().image

    def seek_interval(self) -> int:
        """Periodic snapshots a replay with seeks takes (each seek then replays at most
        this many instructions)."""
        return max(1, self.budget // 8)

    def trace_run(
        self, mode: ReplayMode = ReplayMode.NONE, host_seed: int | None = None, **overrides: Any
    ) -> TargetRun:
        """The TargetRun for this scenario in `mode`: host seed A unless replaying (B), seeks
        only in replay (with periodic snapshots for them); `overrides` replace any
        TargetRun field (`log=`, `start_snapshot=`, `snapshots=()`, ...)."""
        replaying = mode is ReplayMode.REPLAY
        if host_seed is None:
            host_seed = self.host_seeds[1 if replaying else 0]
        seeks = self.seeks if replaying else ()
        fields: dict[str, Any] = {
            "config": self.config,
            "program": self.image(),
            "mode": mode,
            "host_seed": host_seed,
            "host_profile": self.host_profile,
            "stimulus": self.stimulus,
            "budget": self.budget,
            "samples": self.samples,
            "stops": self.stops,
            "snapshots": self.snapshots,
            "seeks": seeks,
            "snapshot_every": self.seek_interval() if seeks else None,
            "section_order_seed": self.section_order_seed,
        }
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TargetRun)})
        if unknown:
            raise TypeError(f"trace_run: TargetRun has no field {unknown[0]!r}")
        fields.update(overrides)
        return TargetRun(**fields)

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain msgpack-serialisable data; `from_dict` is its inverse."""
        profile = self.host_profile
        return {
            "config": self.config.to_dict(),
            "program": self.program,
            "stimulus": [[s.host_ns, s.channel, s.payload] for s in self.stimulus],
            "host_seeds": list(self.host_seeds),
            "host_profile": None if profile is None else dataclasses.asdict(profile),
            "stops": [[stop.icount, stop.host_ns] for stop in self.stops],
            "snapshots": list(self.snapshots),
            "seeks": list(self.seeks),
            "section_order_seed": self.section_order_seed,
            "budget": self.budget,
            "samples": list(self.samples),
            "features": list(self.features),
        }

    @classmethod
    def from_dict(cls, data: object) -> Scenario:
        """The inverse of `to_dict`; ScenarioError on anything else."""
        wire = _map(data, "scenario", KEYS)
        stimulus = _list(wire["stimulus"], "stimulus", MAX_STIMULUS)
        profile = wire["host_profile"]
        return cls(
            config=_config(wire["config"]),
            program=_str(wire["program"], "program", MAX_PROGRAM_CHARS),
            stimulus=tuple(_stimulus(item, f"stimulus[{i}]") for i, item in enumerate(stimulus)),
            host_seeds=_seeds(wire["host_seeds"]),
            host_profile=None if profile is None else _profile(profile),
            stops=tuple(
                _stop(item, f"stops[{i}]")
                for i, item in enumerate(_list(wire["stops"], "stops", MAX_POINTS))
            ),
            snapshots=_points(wire["snapshots"], "snapshots"),
            seeks=_points(wire["seeks"], "seeks"),
            section_order_seed=_int(wire["section_order_seed"], "section_order_seed", 0, MAX_U64),
            budget=_int(wire["budget"], "budget", 1, MAX_BUDGET),
            samples=_points(wire["samples"], "samples"),
            features=tuple(
                _str(item, f"features[{i}]", MAX_NAME)
                for i, item in enumerate(_list(wire["features"], "features", MAX_FEATURES))
            ),
        )

    def to_bytes(self) -> bytes:
        header = {"magic": MAGIC, "format": SCENARIO_FORMAT}
        return msgpack.packb(header, use_bin_type=True) + msgpack.packb(
            self.to_dict(), use_bin_type=True
        )

    @classmethod
    def from_bytes(cls, data: object) -> Scenario:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ScenarioError(f"a scenario is bytes, got {type(data).__name__}")
        raw = bytes(data)
        if len(raw) > MAX_BYTES:
            raise ScenarioError(f"a scenario is at most {MAX_BYTES} bytes, got {len(raw)}")
        unpacker = msgpack.Unpacker(
            io.BytesIO(raw),
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_no_ext,
            max_buffer_size=MAX_BYTES,
            max_str_len=4 * MAX_PROGRAM_CHARS,
            max_bin_len=MAX_PAYLOAD,
            max_array_len=MAX_STIMULUS * 4,
            max_map_len=64,
            max_ext_len=0,
        )
        header = _unpack(unpacker, "header")
        if not isinstance(header, dict) or header.get("magic") != MAGIC:
            raise ScenarioError("not a detfuzz scenario: bad magic")
        version = header.get("format")
        if type(version) is not int:
            raise ScenarioError(f"scenario format must be an int, got {_describe(version)}")
        if version != SCENARIO_FORMAT:
            newer = "newer than this detfuzz supports" if version > SCENARIO_FORMAT else "old"
            raise ScenarioError(
                f"scenario format {version} is {newer} (this detfuzz reads {SCENARIO_FORMAT})"
            )
        _map(header, "scenario header", HEADER_KEYS)
        body = _unpack(unpacker, "body")
        if unpacker.tell() != len(raw):
            raise ScenarioError("trailing bytes after the scenario")
        return cls.from_dict(body)


@functools.lru_cache(maxsize=256)
def _assemble(source: str) -> Program:
    return assemble_program(source, base=RAM_BASE)


# -- checks of a constructed scenario ---------------------------------------------------------


def _check(s: Scenario) -> None:
    if not isinstance(s.config, MachineConfig):
        raise ScenarioError(f"config must be a MachineConfig, got {_describe(s.config)}")
    _str(s.program, "program", MAX_PROGRAM_CHARS)
    _int(s.budget, "budget", 1, MAX_BUDGET)
    _int(s.section_order_seed, "section_order_seed", 0, MAX_U64)
    if not (isinstance(s.host_seeds, tuple) and len(s.host_seeds) == 2):
        raise ScenarioError(f"host_seeds must be a pair, got {_describe(s.host_seeds)}")
    for index, seed in enumerate(s.host_seeds):
        _int(seed, f"host_seeds[{index}]", 0, MAX_U64)
    if s.host_profile is not None and not isinstance(s.host_profile, HostProfile):
        raise ScenarioError(f"host_profile must be a HostProfile, got {_describe(s.host_profile)}")
    if s.host_profile is not None:
        _profile(dataclasses.asdict(s.host_profile))
    _tuple_of(s.stimulus, "stimulus", Stimulus, MAX_STIMULUS)
    total = 0
    for index, event in enumerate(s.stimulus):
        where = f"stimulus[{index}]"
        _int(event.host_ns, f"{where}.host_ns", 0, MAX_NS)
        _str(event.channel, f"{where}.channel", MAX_NAME)
        _bytes(event.payload, f"{where}.payload", MAX_PAYLOAD)
        total += len(event.payload)
    if total > MAX_STIMULUS_BYTES:
        raise ScenarioError(f"stimulus carries {total} bytes, more than {MAX_STIMULUS_BYTES}")
    _tuple_of(s.stops, "stops", Stop, MAX_POINTS)
    for index, stop in enumerate(s.stops):
        _int(stop.icount, f"stops[{index}].icount", 0, MAX_ICOUNT)
        if stop.host_ns is not None:
            _int(stop.host_ns, f"stops[{index}].host_ns", 0, MAX_NS)
    icounts = [stop.icount for stop in s.stops]
    if len(set(icounts)) != len(icounts):
        raise ScenarioError(f"stops: two stops at one icount ({sorted(icounts)})")
    for name in ("snapshots", "seeks", "samples"):
        points = getattr(s, name)
        _tuple_of(points, name, int, MAX_POINTS)
        for index, point in enumerate(points):
            _int(point, f"{name}[{index}]", 0, MAX_ICOUNT)
    _tuple_of(s.features, "features", str, MAX_FEATURES)
    for index, feature in enumerate(s.features):
        _str(feature, f"features[{index}]", MAX_NAME)


def _tuple_of(value: object, where: str, kind: type, cap: int) -> None:
    if not isinstance(value, tuple):
        raise ScenarioError(f"{where} must be a tuple, got {_describe(value)}")
    if len(value) > cap:
        raise ScenarioError(f"{where} has {len(value)} entries, at most {cap} allowed")
    for index, item in enumerate(value):
        if not isinstance(item, kind) or isinstance(item, bool):
            raise ScenarioError(
                f"{where}[{index}] must be a {kind.__name__}, got {_describe(item)}"
            )


# -- typed readers of the wire form ----------------------------------------------------------

T = TypeVar("T")


def _as_scenario_error(read: Callable[..., T]) -> Callable[..., T]:
    """A fuzzer.wire reader whose WireError comes out as a ScenarioError."""

    @functools.wraps(read)
    def reader(*args: Any) -> T:
        try:
            return read(*args)
        except WireError as exc:
            raise ScenarioError(str(exc)) from None

    return reader


_describe = describe
_map = _as_scenario_error(read_map)
_list = _as_scenario_error(read_list)
_int = _as_scenario_error(read_int)
_str = _as_scenario_error(read_str)
_bytes = _as_scenario_error(read_bytes)
_optional = read_optional  # its reader raises ScenarioError already


def _stimulus(value: object, where: str) -> Stimulus:
    items = _list(value, where, 3)
    if len(items) != 3:
        raise ScenarioError(f"{where} must be [host_ns, channel, payload]")
    host_ns, channel, payload = items
    return Stimulus(
        _int(host_ns, f"{where}.host_ns", 0, MAX_NS),
        _str(channel, f"{where}.channel", MAX_NAME),
        _bytes(payload, f"{where}.payload", MAX_PAYLOAD),
    )


def _stop(value: object, where: str) -> Stop:
    items = _list(value, where, 2)
    if len(items) != 2:
        raise ScenarioError(f"{where} must be [icount, host_ns or nil]")
    icount, host_ns = items
    return Stop(
        _int(icount, f"{where}.icount", 0, MAX_ICOUNT),
        _optional(host_ns, lambda v: _int(v, f"{where}.host_ns", 0, MAX_NS)),
    )


def _points(value: object, where: str) -> tuple[int, ...]:
    items = _list(value, where, MAX_POINTS)
    return tuple(_int(item, f"{where}[{i}]", 0, MAX_ICOUNT) for i, item in enumerate(items))


def _seeds(value: object) -> tuple[int, int]:
    items = _list(value, "host_seeds", 2)
    if len(items) != 2:
        raise ScenarioError("host_seeds must be [A, B]")
    return (
        _int(items[0], "host_seeds[0]", 0, MAX_U64),
        _int(items[1], "host_seeds[1]", 0, MAX_U64),
    )


def _profile(value: object) -> HostProfile:
    wire = _map(value, "host_profile", _PROFILE_FIELDS)
    fields = {
        name: _int(wire[name], f"host_profile.{name}", 0, MAX_PROFILE_VALUE)
        for name in _PROFILE_FIELDS
    }
    for name in _PROFILE_POSITIVE:
        if fields[name] < 1:
            raise ScenarioError(f"host_profile.{name} must be positive, got {fields[name]}")
    for name, low in fields.items():
        if name.endswith("_min"):
            high = fields.get(name[: -len("_min")] + "_max")
            if high is not None and low > high:
                raise ScenarioError(f"host_profile.{name} ({low}) is above its maximum ({high})")
    return HostProfile(**fields)


def _config(value: object) -> MachineConfig:
    """The configuration, typed here (MachineConfig.from_dict converts leniently), then
    built by MachineConfig.from_dict for its own rules. Nothing is imported."""
    wire = _map(value, "config", CONFIG_KEYS)
    _int(wire["format"], "config.format", 0, MAX_U64)
    _int(wire["ram_size"], "config.ram_size", 1, MAX_U64)
    _int(wire["icount_shift"], "config.icount_shift", 0, MAX_U64)
    for index, device in enumerate(_list(wire["devices"], "config.devices", MAX_DEVICES)):
        where = f"config.devices[{index}]"
        entry = _map(device, where, DEVICE_KEYS)
        _str(entry["kind"], f"{where}.kind", MAX_NAME)
        _str(entry["name"], f"{where}.name", MAX_NAME)
        _int(entry["base"], f"{where}.base", 0, MAX_U64)
        _optional(entry["irq"], lambda v, w=where: _int(v, f"{w}.irq", 0, MAX_U64))
        for number, option in enumerate(_list(entry["options"], f"{where}.options", MAX_OPTIONS)):
            at = f"{where}.options[{number}]"
            pair = _list(option, at, 2)
            if len(pair) != 2:
                raise ScenarioError(f"{at} must be [key, value]")
            _str(pair[0], f"{at}.key", MAX_NAME)
            if type(pair[1]) not in (int, str, bool):
                raise ScenarioError(f"{at}.value must be an int, string or bool")
            if type(pair[1]) is str:
                _str(pair[1], f"{at}.value", MAX_NAME)
    for index, bug in enumerate(_list(wire["planted_bugs"], "config.planted_bugs", MAX_DEVICES)):
        _str(bug, f"config.planted_bugs[{index}]", MAX_NAME)
    try:
        return MachineConfig.from_dict(wire)
    except ConfigError as exc:
        raise ScenarioError(f"config: {exc}") from None


def _unpack(unpacker: msgpack.Unpacker, part: str) -> object:
    try:
        return unpacker.unpack()
    except msgpack.OutOfData:
        raise ScenarioError(f"not a detfuzz scenario: truncated {part}") from None
    except Exception as exc:  # msgpack's C decoder raises many types on hostile input
        raise ScenarioError(f"not a detfuzz scenario: undecodable {part} ({exc})") from None


def _no_ext(code: int, data: bytes) -> object:
    raise ValueError(f"unexpected msgpack extension type {code}")
