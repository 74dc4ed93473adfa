"""The VMState interpreter: declarative device state and one generic save/load engine.

Modelled on QEMU's `migration/vmstate.c`. A device declares its saved state once, beside its
attributes, as a `VMStateDescription`; `save` and `load` walk that description, so no device
hand-writes serialisation and a field can never be saved but forgotten on load.

    VMSTATE_UART = VMStateDescription(
        "uart0", version=2, minimum_version=1,
        fields=[U8("lcr"), U16("divisor"), U8("fcr", since=2), Fifo("rx_fifo", capacity=16)],
        subsections=[Subsection(VMSTATE_UART_TIMER, needed=lambda uart: uart.timer_pending)],
    )

Field types (each names the attribute it reads and writes; `since=n` makes a field new in
version n, QEMU's VMSTATE_*_V: a section saved at an older version leaves it at its reset
value):

- `U8 U16 U32 U64 I8 I16 I32 I64 Bool`: scalar kinds; call one with an attribute name to
  make a field (`U8("lsr")`), or pass it bare as an array element (`Array("prio", U32,
  length=32)`). Integers are range-checked for their width; `bool` is not an integer here.
- `Bytes(attr, length=n | max_length=n)`: loads as `bytes` (`mutable=True`: `bytearray`).
- `Array(attr, kind, length=n | max_length=n)`: a `list` of values of `kind`.
- `Fifo(attr, capacity=n)`: a byte FIFO held as a `bytearray`, oldest byte first (push with
  `append`, pop with `fifo.pop(0)`). A bytearray rather than a `deque(maxlen=...)`, because
  a full deque silently drops the oldest byte, which would hide a device's overrun bug;
  here an over-full FIFO fails loudly on save.
- `OptionalInt(attr, kind=U64)`: `None` or an integer of `kind` (a timer's `deadline_ns`).
- `Struct(attr, fields)`: fields of the sub-object held in `attr` (`obj.timer.deadline_ns`);
  the sub-object itself is the device's (constructed at reset) and is updated in place.

Saved data is plain msgpack-ready data (str-keyed dicts, lists, int, bool, bytes, None):

    {"name": str, "version": int, "fields": {attr: value}, "subsections": [section, ...]}

Loading is two-phase so a bad section never leaves a device half-loaded: `check` validates
everything (names, versions, every field and subsection, and that each target attribute
exists) into a staging area without touching the object, then `StagedLoad.commit` assigns
and calls the `post_load` hooks. `load` does both; a snapshot container should `check`
every section before committing any, so a bad snapshot leaves the whole machine untouched.
Hostile data raises only `VMStateError`, never a bare KeyError/TypeError/IndexError.

`load` expects a freshly reset object, as QEMU resets devices before loadvm: fields of an
older version and absent subsections are simply not assigned, so they keep their reset
values. Hooks run as in QEMU: `pre_save` before the section's fields are read (a
subsection's only if it is `needed`); on load, subsections' `post_load` before their
parent's, after every value of the section is assigned. A `post_load` may touch only its
own device, because sections load in any order.
"""

from __future__ import annotations

import abc
import reprlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, TypedDict, TypeGuard

Wire: TypeAlias = int | bool | bytes | str | list["Wire"] | dict[str, "Wire"] | None
Hook: TypeAlias = Callable[[Any], None]


class SectionData(TypedDict):
    """What `save` returns for one section (and, nested, for each saved subsection)."""

    name: str
    version: int
    fields: dict[str, Wire]
    subsections: list[SectionData]


SECTION_KEYS: Final = ("name", "version", "fields", "subsections")

# Hostile data can be huge; error messages show a bounded excerpt of it. (Python 3.11's
# reprlib.Repr takes no constructor arguments, hence the attribute assignments.)
_short = reprlib.Repr()
_short.maxstring = _short.maxother = _short.maxlong = 40
_short.maxlist = _short.maxdict = 6


class VMStateError(ValueError):
    """Saved state that does not match its description (or an object that cannot be saved).
    The message names the section and field: `load uart0.lsr: 256 is out of range ...`."""


def _fail(where: str, problem: str) -> VMStateError:
    return VMStateError(f"{where}: {problem}")


def _show(value: object) -> str:
    return _short.repr(value)


def _type_name(value: object) -> str:
    return type(value).__name__


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass in Python; a Bool saved where an int belongs is a type error.
    return isinstance(value, int) and not isinstance(value, bool)


def _expect_dict(value: object, where: str, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"{what} must be a dict, got {_type_name(value)}")
    return value


def _expect_list(value: object, where: str, what: str) -> list[Any]:
    # msgpack decodes arrays as lists; tuples are accepted for hand-built data.
    if not isinstance(value, list | tuple):
        raise _fail(where, f"{what} must be a list, got {_type_name(value)}")
    return list(value)


def _check_bounds(where: str, *, length: int | None, max_length: int | None) -> None:
    """Exactly one of `length` (fixed) and `max_length` (bounded) must be given, >= 0."""
    if (length is None) == (max_length is None):
        raise ValueError(f"{where}: give exactly one of length= and max_length=")
    bound = length if length is not None else max_length
    if not _is_int(bound) or bound < 0:
        raise ValueError(f"{where}: length must be a non-negative int, got {bound!r}")


def _check_length(n: int, where: str, *, length: int | None, max_length: int | None) -> None:
    if length is not None and n != length:
        raise _fail(where, f"length {n} is not the fixed length {length}")
    if max_length is not None and n > max_length:
        raise _fail(where, f"length {n} exceeds the maximum {max_length}")


# -- kinds: how one value is checked and converted ------------------------------------------


class Kind(abc.ABC):
    """How one value is checked and converted between an attribute and saved data.

    `encode` (save side) and `decode` (load side) both validate, so a device holding an
    out-of-range value fails at save time, where the bug is, rather than at load time."""

    __slots__ = ()

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """A short description for error messages, e.g. `U8 (0..255)`."""

    @abc.abstractmethod
    def encode(self, value: object, where: str) -> Wire:
        """The saved form of an attribute value; VMStateError if the value is invalid."""

    @abc.abstractmethod
    def decode(self, wire: object, where: str, version: int) -> object:
        """The attribute value for saved data; VMStateError if the data is invalid.
        `version` is the saved version of the enclosing section (for a Struct's fields)."""

    def covered(self, path: str) -> Iterator[str]:
        """The attribute paths a field of this kind at `path` saves."""
        yield path

    def __call__(self, attr: str, *, since: int = 1) -> Field:
        """A field saving attribute `attr` with this kind: `U8("lsr")`."""
        return Field(attr, self, since=since)


@dataclass(frozen=True, slots=True)
class IntKind(Kind):
    bits: int
    signed: bool = False

    @property
    def low(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def high(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def label(self) -> str:
        return f"{'I' if self.signed else 'U'}{self.bits} ({self.low}..{self.high})"

    def encode(self, value: object, where: str) -> Wire:
        return self.decode(value, where, 0)

    def decode(self, wire: object, where: str, version: int) -> int:
        del version
        if not _is_int(wire):
            raise _fail(where, f"expected {self.label}, got {_type_name(wire)}")
        if not self.low <= wire <= self.high:
            raise _fail(where, f"{_show(wire)} is out of range for {self.label}")
        return int(wire)  # an int subclass (IntEnum) is saved as a plain int


@dataclass(frozen=True, slots=True)
class BoolKind(Kind):
    @property
    def label(self) -> str:
        return "Bool"

    def encode(self, value: object, where: str) -> Wire:
        return self.decode(value, where, 0)

    def decode(self, wire: object, where: str, version: int) -> bool:
        del version
        if not isinstance(wire, bool):
            raise _fail(where, f"expected Bool, got {_type_name(wire)}")
        return wire


@dataclass(frozen=True, slots=True)
class BytesKind(Kind):
    length: int | None = None
    max_length: int | None = None
    mutable: bool = False

    def __post_init__(self) -> None:
        _check_bounds("Bytes", length=self.length, max_length=self.max_length)

    @property
    def label(self) -> str:
        if self.length is not None:
            return f"Bytes (length {self.length})"
        return f"Bytes (at most {self.max_length})"

    def _checked(self, value: object, where: str) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise _fail(where, f"expected {self.label}, got {_type_name(value)}")
        _check_length(len(value), where, length=self.length, max_length=self.max_length)
        return bytes(value)

    def encode(self, value: object, where: str) -> Wire:
        return self._checked(value, where)

    def decode(self, wire: object, where: str, version: int) -> bytes | bytearray:
        del version
        data = self._checked(wire, where)
        return bytearray(data) if self.mutable else data


@dataclass(frozen=True, slots=True)
class FifoKind(Kind):
    capacity: int

    def __post_init__(self) -> None:
        _check_bounds("Fifo", length=None, max_length=self.capacity)

    @property
    def label(self) -> str:
        return f"Fifo (capacity {self.capacity})"

    def encode(self, value: object, where: str) -> Wire:
        # Only a bytearray: a device that holds its FIFO as anything else has a bug that
        # would show only after a load (which always gives back a bytearray).
        if not isinstance(value, bytearray):
            raise _fail(where, f"expected {self.label} as a bytearray, got {_type_name(value)}")
        _check_length(len(value), where, length=None, max_length=self.capacity)
        return bytes(value)

    def decode(self, wire: object, where: str, version: int) -> bytearray:
        del version
        if not isinstance(wire, bytes | bytearray):
            raise _fail(where, f"expected {self.label} as bytes, got {_type_name(wire)}")
        _check_length(len(wire), where, length=None, max_length=self.capacity)
        return bytearray(wire)


@dataclass(frozen=True, slots=True)
class OptionalKind(Kind):
    inner: IntKind

    def __post_init__(self) -> None:
        if not isinstance(self.inner, IntKind):
            raise ValueError(f"OptionalInt takes an integer kind, got {self.inner!r}")

    @property
    def label(self) -> str:
        return f"None or {self.inner.label}"

    def encode(self, value: object, where: str) -> Wire:
        return None if value is None else self.inner.encode(value, where)

    def decode(self, wire: object, where: str, version: int) -> int | None:
        return None if wire is None else self.inner.decode(wire, where, version)


@dataclass(frozen=True, slots=True)
class ArrayKind(Kind):
    element: Kind
    length: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        _check_bounds("Array", length=self.length, max_length=self.max_length)
        # A struct element would need sub-objects to load into; nothing needs that yet.
        if not isinstance(self.element, Kind) or isinstance(self.element, StructKind):
            raise ValueError(f"Array element must be a non-struct kind, got {self.element!r}")

    @property
    def label(self) -> str:
        size = f"length {self.length}" if self.length is not None else f"at most {self.max_length}"
        return f"Array of {self.element.label} ({size})"

    def _items(self, value: object, where: str) -> list[Any]:
        items = _expect_list(value, where, self.label)
        # Length first: a hostile million-element list fails before any element is decoded.
        _check_length(len(items), where, length=self.length, max_length=self.max_length)
        return items

    def encode(self, value: object, where: str) -> Wire:
        items = self._items(value, where)
        return [self.element.encode(item, f"{where}[{i}]") for i, item in enumerate(items)]

    def decode(self, wire: object, where: str, version: int) -> list[object]:
        items = self._items(wire, where)
        return [self.element.decode(x, f"{where}[{i}]", version) for i, x in enumerate(items)]


@dataclass(frozen=True, slots=True)
class _StagedStruct:
    """Validated values for a sub-object, assigned into it (not over it) on commit."""

    values: dict[str, object]


@dataclass(frozen=True, slots=True)
class StructKind(Kind):
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        _check_unique_attrs(self.fields, "Struct")

    @property
    def label(self) -> str:
        return "Struct"

    def covered(self, path: str) -> Iterator[str]:
        for f in self.fields:
            yield from f.kind.covered(f"{path}.{f.attr}")

    def encode(self, value: object, where: str) -> Wire:
        return _encode_fields(self.fields, value, where)

    def decode(self, wire: object, where: str, version: int) -> _StagedStruct:
        return _StagedStruct(_decode_fields(self.fields, wire, where, version))


U8: Final = IntKind(8)
U16: Final = IntKind(16)
U32: Final = IntKind(32)
U64: Final = IntKind(64)
I8: Final = IntKind(8, signed=True)
I16: Final = IntKind(16, signed=True)
I32: Final = IntKind(32, signed=True)
I64: Final = IntKind(64, signed=True)
Bool: Final = BoolKind()


# -- fields -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One saved attribute: `obj.<attr>` with `kind`, present from version `since` on."""

    attr: str
    kind: Kind
    since: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.attr, str) or not self.attr.isidentifier():
            raise ValueError(f"field attribute must be an identifier, got {self.attr!r}")
        if not isinstance(self.kind, Kind):
            raise ValueError(f"field {self.attr!r}: kind must be a Kind, got {self.kind!r}")
        if not _is_int(self.since) or self.since < 1:
            raise ValueError(f"field {self.attr!r}: since must be an int >= 1")


def Bytes(
    attr: str,
    *,
    length: int | None = None,
    max_length: int | None = None,
    mutable: bool = False,
    since: int = 1,
) -> Field:
    """Fixed (`length`) or bounded (`max_length`) bytes; loads as bytearray if `mutable`."""
    return BytesKind(length, max_length, mutable=mutable)(attr, since=since)


def Array(
    attr: str,
    element: Kind,
    *,
    length: int | None = None,
    max_length: int | None = None,
    since: int = 1,
) -> Field:
    """A list of `element` values, fixed (`length`) or bounded (`max_length`)."""
    return ArrayKind(element, length, max_length)(attr, since=since)


def Fifo(attr: str, *, capacity: int, since: int = 1) -> Field:
    """A byte FIFO held as a bytearray, oldest byte first, at most `capacity` bytes."""
    return FifoKind(capacity)(attr, since=since)


def OptionalInt(attr: str, kind: IntKind = U64, *, since: int = 1) -> Field:
    """None or an int of `kind` (default U64), e.g. a timer's `deadline_ns`."""
    return OptionalKind(kind)(attr, since=since)


def Struct(attr: str, fields: Sequence[Field], *, since: int = 1) -> Field:
    """`fields` of the sub-object in `obj.<attr>`, loaded into it in place."""
    return StructKind(tuple(fields))(attr, since=since)


def _check_unique_attrs(fields: Sequence[Field], where: str) -> None:
    seen: set[str] = set()
    for f in fields:
        if not isinstance(f, Field):
            raise ValueError(f"{where}: expected a Field, got {f!r}")
        if f.attr in seen:
            raise ValueError(f"{where}: attribute {f.attr!r} is declared twice")
        seen.add(f.attr)


def _max_since(fields: Sequence[Field]) -> int:
    """The newest `since` among fields, nested Struct fields included."""
    newest = 1
    for f in fields:
        newest = max(newest, f.since)
        if isinstance(f.kind, StructKind):
            newest = max(newest, _max_since(f.kind.fields))
    return newest


# -- descriptions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VMStateDescription:
    """A device's saved state: QEMU's VMStateDescription.

    `version` is what `save` writes; `load` accepts `minimum_version..version`. Field
    `since` values (nested ones too) must not exceed `version`."""

    name: str
    version: int
    minimum_version: int
    fields: Sequence[Field]
    subsections: Sequence[Subsection] = ()
    pre_save: Hook | None = None
    post_load: Hook | None = None

    def __post_init__(self) -> None:
        # Stored as tuples so a description is immutable and hashable once built.
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "subsections", tuple(self.subsections))
        self._check_versions()
        _check_unique_attrs(self.fields, self.name)
        self._check_subsections()
        _covered(self)  # raises if two (sub)sections save the same attribute

    def _check_versions(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"section name must be a non-empty str, got {self.name!r}")
        if not (_is_int(self.version) and _is_int(self.minimum_version)):
            raise ValueError(f"{self.name}: versions must be ints")
        if not 1 <= self.minimum_version <= self.version:
            raise ValueError(f"{self.name}: need 1 <= minimum_version <= version")
        if _max_since(self.fields) > self.version:
            raise ValueError(f"{self.name}: a field is newer than version {self.version}")

    def _check_subsections(self) -> None:
        names = {self.name}
        for sub in self.subsections:
            if not isinstance(sub, Subsection):
                raise ValueError(f"{self.name}: expected a Subsection, got {sub!r}")
            if sub.desc.name in names:
                raise ValueError(f"{self.name}: section name {sub.desc.name!r} is used twice")
            names.add(sub.desc.name)


@dataclass(frozen=True, slots=True)
class Subsection:
    """Optional state: saved only when `needed(obj)`; absent on load = left at reset."""

    desc: VMStateDescription
    needed: Callable[[Any], bool]


def _covered(desc: VMStateDescription) -> list[str]:
    """Every attribute path `desc` saves, subsections included; raises on a path saved twice
    (two sections assigning one attribute would make the result depend on their order)."""
    paths = [path for f in desc.fields for path in f.kind.covered(f.attr)]
    for sub in desc.subsections:
        paths.extend(_covered(sub.desc))
    dups = sorted(p for p, n in Counter(paths).items() if n > 1)
    if dups:
        raise ValueError(f"{desc.name}: attributes saved more than once: {dups}")
    return paths


def field_names(desc: VMStateDescription) -> frozenset[str]:
    """All attribute paths `desc` covers, subsections included. A Struct's fields appear as
    dotted paths (`timer.deadline_ns`), since the sub-object itself is not replaced."""
    return frozenset(_covered(desc))


# -- save -------------------------------------------------------------------------------------


def _read(obj: object, attr: str, where: str) -> object:
    try:
        return getattr(obj, attr)
    except AttributeError:
        raise _fail(where, f"the object has no attribute {attr!r}") from None


def _encode_fields(fields: Sequence[Field], obj: object, where: str) -> dict[str, Wire]:
    out: dict[str, Wire] = {}
    for f in fields:
        path = f"{where}.{f.attr}"
        out[f.attr] = f.kind.encode(_read(obj, f.attr, path), path)
    return out


def _save_section(desc: VMStateDescription, obj: object, where: str) -> SectionData:
    if desc.pre_save is not None:
        desc.pre_save(obj)
    return {
        "name": desc.name,
        "version": desc.version,
        "fields": _encode_fields(desc.fields, obj, where),
        # Decided after the parent's pre_save, as QEMU does, so pre_save can feed `needed`.
        "subsections": [
            _save_section(sub.desc, obj, f"save {sub.desc.name}")
            for sub in desc.subsections
            if sub.needed(obj)
        ],
    }


def save(desc: VMStateDescription, obj: object) -> SectionData:
    """`obj`'s state as plain msgpack-ready data; calls `pre_save` first. Raises
    VMStateError if an attribute is missing or holds a value its field cannot save."""
    return _save_section(desc, obj, f"save {desc.name}")


# -- load: check into a staging area, then commit ---------------------------------------------


def _check_keys(data: dict[Any, Any], allowed: Sequence[str], where: str, what: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise _fail(where, f"unknown {what} {_show(unknown[0])}")
    missing = [k for k in allowed if k not in data]
    if missing:
        raise _fail(where, f"missing {what} {missing[0]!r}")


def _decode_fields(
    fields: Sequence[Field], wire: object, where: str, version: int
) -> dict[str, object]:
    data = _expect_dict(wire, where, "fields")
    # A field from a later version than the data claims is a corrupt or forged section;
    # say so rather than calling a field the description declares "unknown".
    newer = {f.attr: f.since for f in fields if f.since > version}
    for key in data:
        if key in newer:
            problem = f"field {key!r} is new in version {newer[key]}, saved at {version}"
            raise _fail(where, problem)
    _check_keys(data, [f.attr for f in fields if f.since <= version], where, "field")
    return {
        f.attr: f.kind.decode(data[f.attr], f"{where}.{f.attr}", version)
        for f in fields
        if f.since <= version
    }


@dataclass(frozen=True, slots=True)
class _StagedSection:
    desc: VMStateDescription
    values: dict[str, object]
    subsections: tuple[_StagedSection, ...]


def _check_version(desc: VMStateDescription, wire: object, where: str) -> int:
    if not _is_int(wire):
        raise _fail(where, f"version must be an int, got {_type_name(wire)}")
    if wire > desc.version:
        raise _fail(where, f"version {_show(wire)} is newer than supported ({desc.version})")
    if wire < desc.minimum_version:
        problem = f"version {_show(wire)} is older than the minimum ({desc.minimum_version})"
        raise _fail(where, problem)
    return wire


def _stage_section(desc: VMStateDescription, wire: object, where: str) -> _StagedSection:
    data = _expect_dict(wire, where, "a section")
    _check_keys(data, SECTION_KEYS, where, "section key")
    if data["name"] != desc.name:
        raise _fail(where, f"unknown section {_show(data['name'])}, expected {desc.name!r}")
    version = _check_version(desc, data["version"], where)
    values = _decode_fields(desc.fields, data["fields"], where, version)
    subsections = _stage_subsections(desc, data["subsections"], where)
    return _StagedSection(desc, values, subsections)


def _subsection_name(wire: object, where: str) -> str:
    name = _expect_dict(wire, where, "a subsection").get("name")
    if not isinstance(name, str):
        raise _fail(where, f"subsection name must be a str, got {_type_name(name)}")
    return name


def _stage_subsections(
    desc: VMStateDescription, wire: object, where: str
) -> tuple[_StagedSection, ...]:
    order = {sub.desc.name: i for i, sub in enumerate(desc.subsections)}
    staged: dict[str, _StagedSection] = {}
    for item in _expect_list(wire, where, "subsections"):
        name = _subsection_name(item, where)
        if name not in order:
            raise _fail(where, f"unknown subsection {_show(name)}")
        if name in staged:
            raise _fail(where, f"subsection {name!r} appears twice")
        staged[name] = _stage_section(desc.subsections[order[name]].desc, item, f"load {name}")
    # Declaration order, not data order, so post_load hooks run in one fixed order.
    return tuple(sorted(staged.values(), key=lambda s: order[s.desc.name]))


def _check_targets(obj: object, values: dict[str, object], where: str) -> None:
    """Every attribute to assign exists (a Struct's sub-object too), so commit cannot
    fail halfway on a device that does not match its description."""
    for attr, value in values.items():
        target = _read(obj, attr, f"{where}.{attr}")
        if isinstance(value, _StagedStruct):
            _check_targets(target, value.values, f"{where}.{attr}")


def _check_section_targets(obj: object, staged: _StagedSection) -> None:
    _check_targets(obj, staged.values, f"load {staged.desc.name}")
    for sub in staged.subsections:
        _check_section_targets(obj, sub)


def _assign(obj: object, values: dict[str, object]) -> None:
    for attr, value in values.items():
        if isinstance(value, _StagedStruct):
            _assign(getattr(obj, attr), value.values)
        else:
            setattr(obj, attr, value)


def _assign_section(obj: object, staged: _StagedSection) -> None:
    _assign(obj, staged.values)
    for sub in staged.subsections:
        _assign_section(obj, sub)


def _post_load(obj: object, staged: _StagedSection) -> None:
    for sub in staged.subsections:
        _post_load(obj, sub)
    if staged.desc.post_load is not None:
        staged.desc.post_load(obj)


@dataclass(frozen=True, slots=True)
class StagedLoad:
    """A validated section, not yet assigned. `commit` assigns it and runs post_load."""

    obj: object
    section: _StagedSection = field(repr=False)

    def commit(self) -> None:
        """Assign every staged value, then run the post_load hooks (subsections first)."""
        _assign_section(self.obj, self.section)
        _post_load(self.obj, self.section)


def check(desc: VMStateDescription, obj: object, data: object) -> StagedLoad:
    """Validate `data` against `desc` and `obj` without changing `obj`; VMStateError if any
    part is wrong. Commit the result to load it."""
    staged = _stage_section(desc, data, f"load {desc.name}")
    _check_section_targets(obj, staged)
    return StagedLoad(obj, staged)


def load(desc: VMStateDescription, obj: object, data: object) -> None:
    """Load `data` (from `save`, possibly through msgpack) into the freshly reset `obj`:
    all or nothing, then post_load. Raises VMStateError, leaving `obj` untouched."""
    check(desc, obj, data).commit()
