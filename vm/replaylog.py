"""The record/replay log format (pinned): a header, then one event per logged occurrence.

Modelled on QEMU's replay log (see the reference notes, section 1): the log reads "run N
instructions, then exactly this event". `INSTRUCTION n` events carry the icount deltas;
every other event happens at the icount reached by the INSTRUCTION events before it.

    with open(path, "wb") as stream:
        writer = LogWriter(stream, LogHeader(config_hash(config), config.icount_shift))
        writer.write(Event.instruction(1234))
        writer.write(Event.async_(AsyncKind.CHAR_READ, 0, b"hello"))
        writer.write(Event.end())
    log = read_log_file(path)         # Log(header, events, truncated)

Wire format, msgpack with use_bin_type=True, objects back to back:

- the header, a map with exactly the keys `magic` (MAGIC), `format` (FORMAT_VERSION),
  `config_hash` (str) and `icount_shift` (int);
- the events, each an array `[kind, *args]` with enum arguments as ints; an ASYNC event is
  `[3, subkind, *rest]`. The argument layout of every kind is in EVENT_ARGS and ASYNC_ARGS,
  the one table both construction and decoding check against.

A log ends with END. A log whose writer crashed mid-event ends in bytes that are not a
whole event: `read_log` reports it as `truncated` (or refuses it, on request), but only if
those bytes can be the start of an event; a length that no writer could have written (a
byte string over MAX_PAYLOAD, say) is corruption, not truncation. Every problem, from
construction to decoding, raises LogError, a ValueError, never a bare msgpack/Type/Key
error. Decoding is bounded: hostile length prefixes cannot make it allocate more than
about one event's worth (MAX_EVENT_BYTES).
"""

from __future__ import annotations

import enum
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final, cast

import msgpack

from vm.config import MAX_ICOUNT_SHIFT

MAGIC: Final = b"detfuzz-rr-log"
FORMAT_VERSION: Final = 1
HEADER_KEYS: Final = ("magic", "format", "config_hash", "icount_shift")
# The largest byte string one event carries (a packet, a chunk of input, entropy). Part of
# the format: a reader refuses longer ones, so the writer refuses to build them.
MAX_PAYLOAD: Final = 16 << 20
# One event's encoding is its payload plus a few dozen bytes of array, ints and headers.
MAX_EVENT_BYTES: Final = MAX_PAYLOAD + 1024
MAX_CONFIG_HASH: Final = 256  # characters; a config hash is 64 hex digits
# Events are arrays of at most four items and the header a map of four keys: tight bounds
# keep msgpack from preallocating a list or dict for a hostile count.
_MAX_ARRAY: Final = 16
_MAX_MAP: Final = 16

_U64_MAX: Final = (1 << 64) - 1
_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1
_I32_MAX: Final = (1 << 31) - 1


class LogError(ValueError):
    """A replay log that cannot be built, written or read; the message says where and why
    (event index and byte offset when reading)."""


# -- the kinds (every order below is part of the format: changing it bumps FORMAT_VERSION) ----


class EventKind(enum.IntEnum):
    INSTRUCTION = 0  # (count,) instructions executed since the previous event, >= 1
    INTERRUPT = 1  # ()
    EXCEPTION = 2  # ()
    ASYNC = 3  # (AsyncKind, *ASYNC_ARGS[subkind])
    SHUTDOWN = 4  # (ShutdownCause,)
    CHAR_WRITE = 5  # (result, accepted)
    CLOCK = 6  # (LogClock, value)
    RANDOM = 7  # (data,)
    CHECKPOINT = 8  # (LogCheckpoint,)
    END = 9  # ()


class AsyncKind(enum.IntEnum):
    BH = 0  # (id,) id = the icount when the bottom half was scheduled
    BH_ONESHOT = 1  # (id,)
    CHAR_READ = 2  # (backend, data) input that arrived at character backend `backend`
    NET = 3  # (backend, packet)
    BLOCK = 4  # (backend, request_id)


class ShutdownCause(enum.IntEnum):
    GUEST_PASS = 0
    GUEST_FAIL = 1
    GUEST_RESET = 2
    HOST_QUIT = 3


class LogClock(enum.IntEnum):
    HOST = 0


class LogCheckpoint(enum.IntEnum):
    # The async point has no checkpoint of its own: the ASYNC events written there mark it.
    CLOCK_VIRTUAL = 0  # before the virtual timers due run
    CLOCK_HOST = 1  # before the HOST-clock timers due run
    INIT = 2  # the recording starts
    RESET = 3  # a guest (system) reset


# -- argument specs ------------------------------------------------------------------------


class _BadArg(Exception):
    """An argument problem without its event's name; Event turns it into a LogError."""


@dataclass(frozen=True, slots=True)
class IntArg:
    """A plain int in lo..hi (bool and int subclasses are refused: the wire has none)."""

    name: str
    lo: int
    hi: int
    labelled: bool = True  # str(event) shows "name=value" rather than the bare value

    def check(self, value: object) -> object:
        if type(value) is int and self.lo <= value <= self.hi:
            return value
        raise _BadArg(
            f"must be an int in {_bound(self.lo)}..{_bound(self.hi)}, got {_describe(value)}"
        )

    def show(self, value: Any) -> str:
        return f"{self.name}={value}" if self.labelled else str(value)


@dataclass(frozen=True, slots=True)
class BytesArg:
    """Immutable bytes of min_len..MAX_PAYLOAD bytes."""

    name: str
    min_len: int = 0

    def check(self, value: object) -> object:
        if type(value) is bytes and self.min_len <= len(value) <= MAX_PAYLOAD:
            return value
        if type(value) is bytes:
            raise _BadArg(
                f"must be {self.min_len}..{MAX_PAYLOAD} bytes long, got {len(value)} bytes"
            )
        raise _BadArg(f"must be bytes, got {_describe(value)}")

    def show(self, value: Any) -> str:
        return f"{self.name}={_show_bytes(value)}"


@dataclass(frozen=True, slots=True)
class EnumArg:
    """A member of `enum`; a plain int of a member's value is taken as that member (so a
    decoded event holds members too), a member of another enum is refused."""

    name: str
    enum: type[enum.IntEnum]
    members: Mapping[int, enum.IntEnum] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", {int(m): m for m in self.enum})

    def check(self, value: object) -> object:
        if type(value) is self.enum:
            return value
        if type(value) is int and value in self.members:
            return self.members[value]
        top = len(self.members) - 1
        raise _BadArg(f"must be one of {self.enum.__name__} 0..{top}, got {_describe(value)}")

    def show(self, value: Any) -> str:
        return str(value.name)


ArgSpec = IntArg | BytesArg | EnumArg

_ASYNC_SUBKIND: Final = EnumArg("subkind", AsyncKind)
_BACKEND: Final = IntArg("backend", 0, 255)

# The one table of argument layouts: Event checks against it at construction, and so does
# decoding (it constructs Events). ASYNC's layout continues with ASYNC_ARGS[subkind].
EVENT_ARGS: Final[Mapping[EventKind, tuple[ArgSpec, ...]]] = {
    EventKind.INSTRUCTION: (IntArg("count", 1, _U64_MAX, labelled=False),),
    EventKind.INTERRUPT: (),
    EventKind.EXCEPTION: (),
    EventKind.ASYNC: (_ASYNC_SUBKIND,),
    EventKind.SHUTDOWN: (EnumArg("cause", ShutdownCause),),
    EventKind.CHAR_WRITE: (IntArg("result", 0, _I32_MAX), IntArg("accepted", 0, _I32_MAX)),
    EventKind.CLOCK: (
        EnumArg("clock", LogClock),
        IntArg("value", _I64_MIN, _I64_MAX, labelled=False),
    ),
    EventKind.RANDOM: (BytesArg("data"),),
    EventKind.CHECKPOINT: (EnumArg("checkpoint", LogCheckpoint),),
    EventKind.END: (),
}

ASYNC_ARGS: Final[Mapping[AsyncKind, tuple[ArgSpec, ...]]] = {
    AsyncKind.BH: (IntArg("id", 0, _U64_MAX),),
    AsyncKind.BH_ONESHOT: (IntArg("id", 0, _U64_MAX),),
    AsyncKind.CHAR_READ: (_BACKEND, BytesArg("data", min_len=1)),
    AsyncKind.NET: (_BACKEND, BytesArg("packet")),
    AsyncKind.BLOCK: (_BACKEND, IntArg("request_id", 0, _U64_MAX)),
}

# Whole layouts of the ASYNC subkinds, subkind first, so Event checks one flat tuple.
_ASYNC_LAYOUTS: Final = {sub: (_ASYNC_SUBKIND, *rest) for sub, rest in ASYNC_ARGS.items()}
_KINDS: Final = {int(kind): kind for kind in EventKind}


def _layout(kind: EventKind, args: tuple[Any, ...]) -> tuple[ArgSpec, ...]:
    if kind is not EventKind.ASYNC:
        return EVENT_ARGS[kind]
    if not args:
        raise LogError("ASYNC takes a subkind and its args, got no args")
    try:
        return _ASYNC_LAYOUTS[_ASYNC_SUBKIND.check(args[0])]
    except _BadArg as exc:
        raise LogError(f"ASYNC subkind {exc}") from None


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Event:
    """One log event. Checked when built (LogError for a bad layout or value); enum-typed
    arguments are held as their IntEnum members (a plain int is converted)."""

    kind: EventKind
    args: tuple[int | bytes, ...] = ()

    def __post_init__(self) -> None:
        kind = self.kind
        if type(kind) is not EventKind:
            kind = _event_kind(kind)
            object.__setattr__(self, "kind", kind)
        args = self.args
        if type(args) is not tuple:
            raise LogError(f"{kind.name} args must be a tuple, got {type(args).__name__}")
        layout = _layout(kind, args)
        if len(args) != len(layout):
            raise LogError(f"{_title(kind, args)} takes {_arity(layout)}, got {len(args)}")
        converted: list[Any] | None = None
        for i, spec in enumerate(layout):
            value = args[i]
            try:
                checked = spec.check(value)
            except _BadArg as exc:
                raise LogError(f"{_title(kind, args)} {spec.name} {exc}") from None
            if checked is not value:  # a plain int for an enum argument: hold the member
                if converted is None:
                    converted = list(args)
                converted[i] = checked
        if converted is not None:
            object.__setattr__(self, "args", tuple(converted))

    def __str__(self) -> str:
        """One readable line: `INSTRUCTION 1234`, `CLOCK HOST 17000`, `ASYNC CHAR_READ
        backend=0 data=68656c6c6f ("hello")`, `CHECKPOINT CLOCK_VIRTUAL`."""
        shown = zip(_layout(self.kind, self.args), self.args, strict=True)
        return " ".join([self.kind.name, *(spec.show(value) for spec, value in shown)])

    def __repr__(self) -> str:
        args = ", ".join(_repr_arg(value) for value in self.args)
        if len(self.args) == 1:
            args += ","
        return f"Event(EventKind.{self.kind.name}, ({args}))"

    @classmethod
    def instruction(cls, count: int) -> Event:
        return cls(EventKind.INSTRUCTION, (count,))

    @classmethod
    def interrupt(cls) -> Event:
        return cls(EventKind.INTERRUPT)

    @classmethod
    def exception(cls) -> Event:
        return cls(EventKind.EXCEPTION)

    @classmethod
    def async_(cls, subkind: AsyncKind, *rest: int | bytes) -> Event:
        return cls(EventKind.ASYNC, (subkind, *rest))

    @classmethod
    def shutdown(cls, cause: ShutdownCause) -> Event:
        return cls(EventKind.SHUTDOWN, (cause,))

    @classmethod
    def char_write(cls, result: int, accepted: int) -> Event:
        return cls(EventKind.CHAR_WRITE, (result, accepted))

    @classmethod
    def clock(cls, clock: LogClock, value: int) -> Event:
        return cls(EventKind.CLOCK, (clock, value))

    @classmethod
    def random(cls, data: bytes) -> Event:
        return cls(EventKind.RANDOM, (data,))

    @classmethod
    def checkpoint(cls, checkpoint: LogCheckpoint) -> Event:
        return cls(EventKind.CHECKPOINT, (checkpoint,))

    @classmethod
    def end(cls) -> Event:
        return cls(EventKind.END)


def _event_kind(kind: object) -> EventKind:
    if type(kind) is not int:
        raise LogError(f"event kind must be an EventKind or int, got {_describe(kind)}")
    try:
        return _KINDS[kind]
    except KeyError:
        raise LogError(f"unknown event kind {_int_text(kind)}") from None


def _title(kind: EventKind, args: tuple[Any, ...]) -> str:
    """The event's name for messages: its kind, and an ASYNC event's subkind if valid."""
    if kind is EventKind.ASYNC and args and type(args[0]) in (int, AsyncKind):
        subkind = _ASYNC_SUBKIND.members.get(args[0])
        if subkind is not None:
            return f"ASYNC {subkind.name}"
    return kind.name


def _arity(layout: tuple[ArgSpec, ...]) -> str:
    if not layout:
        return "no args"
    return f"{len(layout)} args ({', '.join(spec.name for spec in layout)})"


def _repr_arg(value: object) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


# -- the header ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogHeader:
    """Which machine a log is of: its configuration hash and icount shift, and the format."""

    config_hash: str
    icount_shift: int
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if type(self.config_hash) is not str or not 0 < len(self.config_hash) <= MAX_CONFIG_HASH:
            got = self.config_hash
            shown = f"{len(got)} characters" if type(got) is str else _describe(got)
            raise LogError(
                f"replay log header config_hash must be a str of 1..{MAX_CONFIG_HASH} "
                f"characters, got {shown}"
            )
        if type(self.icount_shift) is not int or not 0 <= self.icount_shift <= MAX_ICOUNT_SHIFT:
            raise LogError(
                f"replay log header icount_shift must be an int in 0..{MAX_ICOUNT_SHIFT}, "
                f"got {_describe(self.icount_shift)}"
            )
        if type(self.format) is not int or not 1 <= self.format <= FORMAT_VERSION:
            raise LogError(
                f"replay log header format must be an int in 1..{FORMAT_VERSION}, "
                f"got {_describe(self.format)}"
            )


def check_header(header: LogHeader, *, config_hash: str, icount_shift: int) -> None:
    """LogError unless the log was recorded on a machine of this configuration and shift."""
    if header.icount_shift != icount_shift:
        raise LogError(
            f"replay log icount shift {header.icount_shift} is not the machine's {icount_shift}"
        )
    if header.config_hash != config_hash:
        raise LogError(
            f"replay log is of machine configuration {header.config_hash:.16}..., not this "
            f"machine's {config_hash:.16}..."
        )


# -- encoding and writing ------------------------------------------------------------------


def encode_header(header: LogHeader) -> bytes:
    if not isinstance(header, LogHeader):
        raise LogError(f"a replay log header must be a LogHeader, got {type(header).__name__}")
    wire = {
        "magic": MAGIC,
        "format": header.format,
        "config_hash": header.config_hash,
        "icount_shift": header.icount_shift,
    }
    return msgpack.packb(wire, use_bin_type=True)


def encode_event(event: Event) -> bytes:
    """The event's wire bytes; `decode_event` is its exact inverse."""
    if type(event) is not Event:
        raise LogError(f"a replay log event must be an Event, got {type(event).__name__}")
    # IntEnum members pack as their ints; the Event was checked when it was built.
    return msgpack.packb([event.kind, *event.args], use_bin_type=True)


class LogWriter:
    """Streams a log to a binary stream: the header at once, then one event per `write`.

    With `flush_each` the stream is flushed after every event, so a crash leaves a file
    readable up to its last whole event. The caller owns the stream: `close` flushes it but
    does not close it, and writes no END (the engine writes END itself)."""

    __slots__ = ("_blocked", "_bytes", "_count", "_flush_each", "_packer", "_stream", "header")

    def __init__(self, stream: BinaryIO, header: LogHeader, *, flush_each: bool = True) -> None:
        data = encode_header(header)
        self.header = header
        self._stream = stream
        self._flush_each = flush_each
        # One Packer for the whole log: write() runs per logged event.
        self._packer = msgpack.Packer(use_bin_type=True)
        self._count = 0
        self._blocked: str | None = None  # why write() refuses, once it does
        stream.write(data)
        self._bytes = len(data)
        if flush_each:
            stream.flush()

    @property
    def count(self) -> int:
        """Events written so far."""
        return self._count

    @property
    def bytes_written(self) -> int:
        """Bytes written so far, the header included."""
        return self._bytes

    def write(self, event: Event) -> None:
        if self._blocked is not None:
            raise LogError(self._blocked)
        if type(event) is not Event:
            raise LogError(f"a replay log event must be an Event, got {type(event).__name__}")
        data = self._packer.pack([event.kind, *event.args])
        self._stream.write(data)
        self._bytes += len(data)
        self._count += 1
        if self._flush_each:
            self._stream.flush()
        if event.kind is EventKind.END:
            # A reader refuses anything after END, so refuse to write it.
            self._blocked = f"replay log writer: event {self._count} would follow END"

    def close(self) -> None:
        """Flush the stream and refuse further writes (idempotent)."""
        if self._blocked != "replay log writer is closed":
            self._blocked = "replay log writer is closed"
            self._stream.flush()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- decoding and reading ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Log:
    """A decoded log. `truncated`: it ends in bytes that are not a whole event (a writer
    that crashed mid-event); `ended`: its last event is END."""

    header: LogHeader
    events: tuple[Event, ...]
    truncated: bool

    @property
    def ended(self) -> bool:
        return bool(self.events) and self.events[-1].kind is EventKind.END


def read_log(data: bytes, *, allow_truncated: bool = True) -> Log:
    """Decode and validate a whole log. LogError for anything that is not a log of this
    format, naming the event index and byte offset; a truncated last event gives
    `truncated=True`, or LogError if not `allow_truncated`."""
    raw = _as_bytes(data)
    if not raw:
        raise LogError("not a detfuzz replay log: empty")
    unpacker = _unpacker(raw)
    header = _read_header(unpacker)
    events: list[Event] = []
    total = len(raw)
    truncated = False
    ended = False
    while (start := unpacker.tell()) < total:
        index = len(events)
        where = f"replay log event {index} at byte {start}"
        if ended:
            raise LogError(f"{where}: data after END (event {index - 1})")
        try:
            wire = unpacker.unpack()
        except msgpack.OutOfData:
            _check_tail(raw, start, index)
            if not allow_truncated:
                message = f"replay log is truncated inside event {index} at byte {start}"
                raise LogError(message) from None
            truncated = True
            break
        except Exception as exc:  # msgpack's C decoder raises many types on hostile input
            raise LogError(f"{where}: undecodable ({_short(exc)})") from None
        try:
            event = _event_from_wire(wire)
        except LogError as exc:
            raise LogError(f"{where}: {exc}") from None
        events.append(event)
        ended = event.kind is EventKind.END
    return Log(header, tuple(events), truncated)


def read_log_file(path: str | os.PathLike[str], *, allow_truncated: bool = True) -> Log:
    """`read_log` of a file's contents; an unreadable file is a LogError naming it."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise LogError(f"cannot read replay log {os.fspath(path)}: {exc.strerror or exc}") from None
    return read_log(data, allow_truncated=allow_truncated)


def decode_event(data: bytes) -> Event:
    """The one event encoded in `data` (the exact inverse of `encode_event`)."""
    raw = _as_bytes(data)
    unpacker = _unpacker(raw)
    try:
        wire = unpacker.unpack()
    except msgpack.OutOfData:
        _check_tail(raw, 0, 0)
        raise LogError("replay log event is truncated or empty") from None
    except Exception as exc:  # msgpack's C decoder raises many types on hostile input
        raise LogError(f"replay log event is undecodable ({_short(exc)})") from None
    if unpacker.tell() != len(raw):
        raise LogError(f"replay log event has {len(raw) - unpacker.tell()} trailing bytes")
    try:
        return _event_from_wire(wire)
    except LogError as exc:
        raise LogError(f"replay log event: {exc}") from None


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise LogError(f"a replay log is bytes, got {type(data).__name__}")


def _unpacker(raw: bytes) -> msgpack.Unpacker:
    # Read from a file-like view so msgpack's buffer holds at most one event; every length
    # is bounded, and arrays and maps tightly, so a hostile count allocates nothing big.
    return msgpack.Unpacker(
        io.BytesIO(raw),
        raw=False,
        use_list=True,
        ext_hook=_no_ext,
        max_buffer_size=MAX_EVENT_BYTES,
        max_bin_len=MAX_PAYLOAD,
        max_str_len=MAX_CONFIG_HASH,
        max_array_len=_MAX_ARRAY,
        max_map_len=_MAX_MAP,
        max_ext_len=0,
    )


def _no_ext(code: int, data: bytes) -> object:
    # The writer emits no extension types; refusing them keeps a tuple (msgpack's ExtType)
    # from ever reaching the typed checks.
    raise ValueError(f"unexpected msgpack extension type {code}")


def _read_header(unpacker: msgpack.Unpacker) -> LogHeader:
    try:
        wire = unpacker.unpack()
    except msgpack.OutOfData:
        raise LogError("not a detfuzz replay log: truncated header") from None
    except Exception as exc:  # msgpack's C decoder raises many types on hostile input
        raise LogError(f"not a detfuzz replay log: undecodable header ({_short(exc)})") from None
    if type(wire) is not dict or wire.get("magic") != MAGIC:
        raise LogError("not a detfuzz replay log: bad magic")
    version = wire.get("format")
    if type(version) is not int:
        raise LogError(f"replay log format version must be an int, got {_describe(version)}")
    if version > FORMAT_VERSION:
        raise LogError(
            f"replay log format {_int_text(version)} is newer than this detfuzz supports "
            f"({FORMAT_VERSION})"
        )
    if version != FORMAT_VERSION:
        raise LogError(f"replay log format {version} is not supported ({FORMAT_VERSION})")
    unknown = [key for key in wire if key not in HEADER_KEYS]
    if unknown:
        raise LogError(f"replay log header: unknown key {unknown[0]!r:.40}")
    missing = [key for key in HEADER_KEYS if key not in wire]
    if missing:
        raise LogError(f"replay log header: missing key {missing[0]!r}")
    return LogHeader(wire["config_hash"], wire["icount_shift"], version)


def _event_from_wire(wire: object) -> Event:
    if type(wire) is not list:
        raise LogError(f"an event must be a msgpack array, got {_describe(wire)}")
    if not wire:
        raise LogError("an event must be a msgpack array [kind, *args], got an empty one")
    return Event(wire[0], tuple(wire[1:]))


# How each msgpack type byte begins: (size up to the payload, size of its big-endian length
# field, fixed length, what the length counts). Only `_check_tail` walks these.
_Token = tuple[int, int, int, str]


def _token_table() -> tuple[_Token, ...]:
    table: list[_Token] = [(1, 0, 0, "")] * 256  # fixints, nil, bools: one byte
    for b in range(0x80, 0x90):
        table[b] = (1, 0, b & 0x0F, "map")
    for b in range(0x90, 0xA0):
        table[b] = (1, 0, b & 0x0F, "array")
    for b in range(0xA0, 0xC0):
        table[b] = (1, 0, b & 0x1F, "str")
    fixed = {0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}
    fixed |= {0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}
    for b, size in fixed.items():
        table[b] = (size, 0, 0, "")
    for b, size in zip(range(0xD4, 0xD9), (1, 2, 4, 8, 16), strict=True):
        table[b] = (2, 0, size, "ext")  # fixext: type byte, then `size` bytes
    for first, kind in ((0xC4, "bin"), (0xD9, "str")):
        for b, width in zip(range(first, first + 3), (1, 2, 4), strict=True):
            table[b] = (1 + width, width, 0, kind)
    for b, width in zip(range(0xC7, 0xCA), (1, 2, 4), strict=True):
        table[b] = (2 + width, width, 0, "ext")  # then the type byte
    for first, kind in ((0xDC, "array"), (0xDE, "map")):
        for b, width in zip(range(first, first + 2), (2, 4), strict=True):
            table[b] = (1 + width, width, 0, kind)
    table[0xC1] = (1, 0, 0, "never-used")
    return tuple(table)


_TOKENS: Final = _token_table()
_LIMITS: Final = {
    "bin": (MAX_PAYLOAD, "byte string"),
    "str": (MAX_CONFIG_HASH, "string"),
    "array": (_MAX_ARRAY, "array"),
    "map": (_MAX_MAP, "map"),
}


def _check_tail(raw: bytes, start: int, index: int) -> None:
    """LogError unless raw[start:] (an incomplete msgpack object) can be the beginning of an
    event a writer was cut off in. msgpack checks a byte string's length only once all its
    bytes are there, so a hostile length running past the end would otherwise pass as
    truncation, hiding every event after it."""
    pos, end = start, len(raw)
    while pos < end:
        head, width, length, kind = _TOKENS[raw[pos]]
        if pos + head > end:
            return  # the cut falls inside this token's header
        if width:
            length = int.from_bytes(raw[pos + 1 : pos + 1 + width], "big")
        problem = _token_problem(kind, length)
        if problem is not None:
            raise LogError(f"replay log event {index} at byte {start}: {problem} (at byte {pos})")
        pos += head + (length if kind in ("bin", "str", "ext") else 0)


def _token_problem(kind: str, length: int) -> str | None:
    if kind in ("ext", "never-used"):
        return f"undecodable (msgpack {'extension type' if kind == 'ext' else 'byte 0xc1'})"
    if kind in _LIMITS:
        limit, what = _LIMITS[kind]
        if length > limit:
            return f"a {what} of length {length} exceeds the limit of {limit}"
    return None


# -- listing and statistics ------------------------------------------------------------------


def dump_lines(log: Log) -> Iterator[str]:
    """A readable listing (like QEMU's scripts/replay-dump.py): a header line, then one line
    per event with its index, the icount at which it happens and the event itself. An
    INSTRUCTION line shows the icount its instructions reach."""
    header = log.header
    state = "ended" if log.ended else "truncated" if log.truncated else "not ended (no END)"
    yield (
        f"replay log format {header.format}, config {header.config_hash}, icount shift "
        f"{header.icount_shift}, {len(log.events)} events, {state}"
    )
    final = sum(_instructions(event) for event in log.events)
    index_width = len(str(max(len(log.events) - 1, 0)))
    icount_width = len(str(final))
    icount = 0
    for index, event in enumerate(log.events):
        icount += _instructions(event)
        yield f"{index:>{index_width}}  icount {icount:>{icount_width}}  {event}"
    if log.truncated:
        yield f"(truncated: incomplete bytes after event {len(log.events) - 1})"


def _instructions(event: Event) -> int:
    """How far the event moves icount: its count for INSTRUCTION, else nothing."""
    return cast(int, event.args[0]) if event.kind is EventKind.INSTRUCTION else 0


@dataclass(frozen=True, slots=True)
class LogStats:
    """Sizes of a log as LogWriter writes it (the canonical encoding)."""

    events: int
    instructions: int  # the icount the log reaches
    header_bytes: int
    event_bytes: int
    per_kind: Mapping[EventKind, int]  # number of events of each kind (every kind listed)
    bytes_per_kind: Mapping[EventKind, int]

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.event_bytes

    @property
    def bytes_per_event(self) -> float:
        return self.event_bytes / self.events if self.events else 0.0


def log_stats(log: Log) -> LogStats:
    packer = msgpack.Packer(use_bin_type=True)
    per_kind = dict.fromkeys(EventKind, 0)
    bytes_per_kind = dict.fromkeys(EventKind, 0)
    instructions = 0
    for event in log.events:
        per_kind[event.kind] += 1
        bytes_per_kind[event.kind] += len(packer.pack([event.kind, *event.args]))
        instructions += _instructions(event)
    return LogStats(
        events=len(log.events),
        instructions=instructions,
        header_bytes=len(encode_header(log.header)),
        event_bytes=sum(bytes_per_kind.values()),
        per_kind=per_kind,
        bytes_per_kind=bytes_per_kind,
    )


# -- text helpers ----------------------------------------------------------------------------

_SHOWN_BYTES: Final = 32  # longer byte strings are elided in str(event)
_PRINTABLE: Final = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def _show_bytes(data: bytes) -> str:
    if not data:
        return "(empty)"
    if len(data) > _SHOWN_BYTES:
        return f"{data[:_SHOWN_BYTES].hex()}... ({len(data)} bytes)"
    if _PRINTABLE.issuperset(data):
        text = data.decode("ascii").encode("unicode_escape").decode("ascii")
        return f'{data.hex()} ("{text.replace(chr(34), chr(92) + chr(34))}")'
    return data.hex()


def _bound(n: int) -> str:
    """A range end as written in the specs: 2**64-1 rather than 18446744073709551615."""
    if n > 255 and n & (n + 1) == 0:
        return f"2**{n.bit_length()}-1"
    if n < 0 and n & (-n - 1) == 0:
        return f"-2**{(-n).bit_length() - 1}"
    return str(n)


def _int_text(n: int) -> str:
    # str() of a huge int is slow, and past 4300 digits a ValueError of its own.
    return str(n) if n.bit_length() <= 128 else f"an int of {n.bit_length()} bits"


def _describe(value: object) -> str:
    """A short description of a refused value, for messages (never a huge repr)."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, bool):
        return f"a bool ({value})"
    if isinstance(value, int):
        return _int_text(value) if type(value) is int else f"a {type(value).__name__}"
    if isinstance(value, bytes | bytearray | str | list | dict):
        return f"a {type(value).__name__} of length {len(value)}"
    return "nil" if value is None else f"a {type(value).__name__}"


def _short(exc: BaseException) -> str:
    return f"{exc}"[:120] or type(exc).__name__
