"""The record/replay log format (vm/replaylog.py): round trips of every event kind at the
edges of every range, construction checks, the streaming writer, and hostile input
(every truncation, random corruption, bad headers, huge length prefixes), which must
raise LogError and nothing else."""

from __future__ import annotations

import io
import re
import tracemalloc

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vm.replaylog import (
    ASYNC_ARGS,
    EVENT_ARGS,
    FORMAT_VERSION,
    MAGIC,
    MAX_PAYLOAD,
    AsyncKind,
    Event,
    EventKind,
    Log,
    LogCheckpoint,
    LogClock,
    LogError,
    LogHeader,
    LogWriter,
    ShutdownCause,
    check_header,
    decode_event,
    dump_lines,
    encode_event,
    encode_header,
    log_stats,
    read_log,
    read_log_file,
)

U64 = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
I32 = (1 << 31) - 1
HASH = "0123456789abcdef" * 4
HEADER = LogHeader(HASH, 3)
HEADER_BYTES = encode_header(HEADER)
MB = 1 << 20


def wire(*items: object) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


DROP = object()  # header_bytes(key=DROP) leaves the key out


def header_bytes(**changes: object) -> bytes:
    fields = {"magic": MAGIC, "format": FORMAT_VERSION, "config_hash": HASH, "icount_shift": 3}
    fields.update(changes)
    return msgpack.packb({k: v for k, v in fields.items() if v is not DROP}, use_bin_type=True)


def log_bytes(events: list[Event]) -> bytes:
    return HEADER_BYTES + b"".join(encode_event(event) for event in events)


def same_types(a: Event, b: Event) -> bool:
    return type(a.kind) is type(b.kind) and [type(x) for x in a.args] == [type(y) for y in b.args]


# -- strategies ------------------------------------------------------------------------------


def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Ints of lo..hi, the range's edges drawn often."""
    edges = sorted({lo, lo + 1, hi - 1, hi, max(lo, min(hi, 0))})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def payloads(min_size: int = 0) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=min_size, max_size=48)


# Written from the format's ranges, not from vm.replaylog's tables, so a wrong table fails.
EVENTS: st.SearchStrategy[Event] = st.one_of(
    st.builds(Event.instruction, ints(1, U64)),
    st.just(Event.interrupt()),
    st.just(Event.exception()),
    st.builds(Event.async_, st.sampled_from([AsyncKind.BH, AsyncKind.BH_ONESHOT]), ints(0, U64)),
    st.builds(
        lambda backend, data: Event.async_(AsyncKind.CHAR_READ, backend, data),
        ints(0, 255),
        payloads(min_size=1),
    ),
    st.builds(
        lambda backend, packet: Event.async_(AsyncKind.NET, backend, packet),
        ints(0, 255),
        payloads(),
    ),
    st.builds(
        lambda backend, request: Event.async_(AsyncKind.BLOCK, backend, request),
        ints(0, 255),
        ints(0, U64),
    ),
    st.builds(Event.shutdown, st.sampled_from(ShutdownCause)),
    st.builds(Event.char_write, ints(0, I32), ints(0, I32)),
    st.builds(Event.clock, st.sampled_from(LogClock), ints(I64_MIN, I64_MAX)),
    st.builds(Event.random, payloads()),
    st.builds(Event.checkpoint, st.sampled_from(LogCheckpoint)),
)

# One of every kind and subkind, a small log for the byte-by-byte tests.
ONE_OF_EACH = [
    Event.instruction(1),
    Event.async_(AsyncKind.BH, 7),
    Event.async_(AsyncKind.BH_ONESHOT, U64),
    Event.instruction(300),
    Event.interrupt(),
    Event.exception(),
    Event.async_(AsyncKind.CHAR_READ, 0, b"hello"),
    Event.async_(AsyncKind.NET, 255, bytes(range(40))),
    Event.async_(AsyncKind.BLOCK, 1, 1 << 40),
    Event.char_write(5, 4),
    Event.clock(LogClock.HOST, I64_MIN),
    Event.random(b"\x00\xff" * 20),
    Event.checkpoint(LogCheckpoint.CLOCK_VIRTUAL),
    Event.shutdown(ShutdownCause.HOST_QUIT),
    Event.end(),
]
SAMPLE = log_bytes(ONE_OF_EACH)


def test_one_of_each_covers_every_kind_and_subkind() -> None:
    assert {event.kind for event in ONE_OF_EACH} == set(EventKind)
    subkinds = {event.args[0] for event in ONE_OF_EACH if event.kind is EventKind.ASYNC}
    assert subkinds == set(AsyncKind)
    assert set(EVENT_ARGS) == set(EventKind)
    assert set(ASYNC_ARGS) == set(AsyncKind)


# -- the pinned format -------------------------------------------------------------------------


def test_format_constants_and_enum_orders_are_pinned() -> None:
    # The numbers are the wire format: a reorder must change FORMAT_VERSION, so fail loudly.
    assert MAGIC == b"detfuzz-rr-log"
    assert FORMAT_VERSION == 1
    assert {k.name: k.value for k in EventKind} == {
        "INSTRUCTION": 0,
        "INTERRUPT": 1,
        "EXCEPTION": 2,
        "ASYNC": 3,
        "SHUTDOWN": 4,
        "CHAR_WRITE": 5,
        "CLOCK": 6,
        "RANDOM": 7,
        "CHECKPOINT": 8,
        "END": 9,
    }
    assert {k.name: k.value for k in AsyncKind} == {
        "BH": 0,
        "BH_ONESHOT": 1,
        "CHAR_READ": 2,
        "NET": 3,
        "BLOCK": 4,
    }
    assert {k.name: k.value for k in ShutdownCause} == {
        "GUEST_PASS": 0,
        "GUEST_FAIL": 1,
        "GUEST_RESET": 2,
        "HOST_QUIT": 3,
    }
    assert {k.name: k.value for k in LogClock} == {"HOST": 0}
    assert {k.name: k.value for k in LogCheckpoint} == {
        "CLOCK_VIRTUAL": 0,
        "CLOCK_HOST": 1,
        "INIT": 2,
        "RESET": 3,
    }


def test_wire_layout() -> None:
    assert msgpack.unpackb(HEADER_BYTES) == {
        "magic": MAGIC,
        "format": 1,
        "config_hash": HASH,
        "icount_shift": 3,
    }
    assert encode_event(Event.instruction(1234)) == wire(0, 1234)
    assert encode_event(Event.async_(AsyncKind.CHAR_READ, 2, b"hi")) == wire(3, 2, 2, b"hi")
    assert encode_event(Event.clock(LogClock.HOST, -5)) == wire(6, 0, -5)
    assert encode_event(Event.end()) == wire(9)
    assert b"\xc4\x02hi" in encode_event(Event.random(b"hi"))  # bin, not str


# -- round trips -------------------------------------------------------------------------------


@given(EVENTS)
def test_decode_is_the_exact_inverse_of_encode(event: Event) -> None:
    data = encode_event(event)
    decoded = decode_event(data)
    assert decoded == event
    assert same_types(decoded, event)
    assert repr(decoded) == repr(event)
    assert encode_event(decoded) == data


@given(st.lists(EVENTS, max_size=12), st.booleans())
def test_log_round_trip(events: list[Event], end: bool) -> None:
    if end:
        events = [*events, Event.end()]
    data = log_bytes(events)
    log = read_log(data, allow_truncated=False)
    assert log == Log(HEADER, tuple(events), truncated=False)
    assert all(same_types(a, b) for a, b in zip(log.events, events, strict=True))
    assert log.ended == end
    assert encode_header(log.header) + b"".join(encode_event(e) for e in log.events) == data


def test_plain_ints_for_enum_args_become_members() -> None:
    event = Event(3, (2, 0, b"x"))
    assert event == Event.async_(AsyncKind.CHAR_READ, 0, b"x")
    assert type(event.kind) is EventKind
    assert type(event.args[0]) is AsyncKind
    for kind, member in [(4, ShutdownCause.GUEST_RESET), (8, LogCheckpoint.RESET)]:
        event = Event(kind, (int(member),))
        assert event.args[0] is member
    assert Event(6, (0, 1)).args[0] is LogClock.HOST
    assert repr(Event(3, (0, 5))) == "Event(EventKind.ASYNC, (AsyncKind.BH, 5))"
    assert repr(Event.end()) == "Event(EventKind.END, ())"
    assert repr(Event.instruction(3)) == "Event(EventKind.INSTRUCTION, (3,))"
    assert len({Event.instruction(3), Event(0, (3,)), Event.random(b"x")}) == 2


def test_largest_payload_round_trips_and_one_more_byte_is_refused() -> None:
    big = bytes(MAX_PAYLOAD)
    event = Event.async_(AsyncKind.NET, 0, big)
    log = read_log(log_bytes([event]), allow_truncated=False)
    assert log.events == (event,)
    with pytest.raises(LogError, match=r"^RANDOM data must be 0\.\.16777216 bytes long"):
        Event.random(big + b"\0")
    # On the wire too: a byte string one past the limit is refused, whole or cut short.
    data = HEADER_BYTES + wire(7, big + b"\0")
    with pytest.raises(LogError, match="replay log event 0 at byte"):
        read_log(data)
    with pytest.raises(LogError, match="exceeds the limit of 16777216"):
        read_log(data[:-100])


# -- construction checks -------------------------------------------------------------------

# (kind, a valid args tuple, index of an int arg, its range)
INT_RANGES = [
    (EventKind.INSTRUCTION, (1,), 0, 1, U64),
    (EventKind.ASYNC, (AsyncKind.BH, 0), 1, 0, U64),
    (EventKind.ASYNC, (AsyncKind.BH_ONESHOT, 0), 1, 0, U64),
    (EventKind.ASYNC, (AsyncKind.CHAR_READ, 0, b"x"), 1, 0, 255),
    (EventKind.ASYNC, (AsyncKind.NET, 0, b""), 1, 0, 255),
    (EventKind.ASYNC, (AsyncKind.BLOCK, 0, 0), 1, 0, 255),
    (EventKind.ASYNC, (AsyncKind.BLOCK, 0, 0), 2, 0, U64),
    (EventKind.CHAR_WRITE, (0, 0), 0, 0, I32),
    (EventKind.CHAR_WRITE, (0, 0), 1, 0, I32),
    (EventKind.CLOCK, (LogClock.HOST, 0), 1, I64_MIN, I64_MAX),
]


def replaced(args: tuple[object, ...], index: int, value: object) -> tuple[object, ...]:
    return (*args[:index], value, *args[index + 1 :])


@pytest.mark.parametrize(("kind", "args", "index", "lo", "hi"), INT_RANGES)
def test_int_ranges(kind: EventKind, args: tuple, index: int, lo: int, hi: int) -> None:
    for value in (lo, hi):
        event = Event(kind, replaced(args, index, value))
        assert decode_event(encode_event(event)) == event
    for value in (lo - 1, hi + 1, True, False, 1.0, None, "1", b"1", EventKind.ASYNC):
        bad = replaced(args, index, value)
        with pytest.raises(LogError, match="must be an int in"):
            Event(kind, bad)
        if type(value) is EventKind:
            continue  # an IntEnum is refused here, but on the wire it is just its int
        try:
            data = wire(kind, *bad)
        except (OverflowError, TypeError):
            continue  # not representable in msgpack at all
        with pytest.raises(LogError, match=r"^replay log event: .*must be an int in"):
            decode_event(data)


ENUM_ARGS = [
    (EventKind.SHUTDOWN, (ShutdownCause.GUEST_PASS,), 0, ShutdownCause),
    (EventKind.CHECKPOINT, (LogCheckpoint.INIT,), 0, LogCheckpoint),
    (EventKind.CLOCK, (LogClock.HOST, 0), 0, LogClock),
    (EventKind.ASYNC, (AsyncKind.BH, 0), 0, AsyncKind),
]


@pytest.mark.parametrize(("kind", "args", "index", "enum"), ENUM_ARGS)
def test_enum_args(kind: EventKind, args: tuple, index: int, enum: type) -> None:
    for bad in (len(enum), -1, True, "0", 0.0, ShutdownCause.GUEST_PASS, LogClock.HOST):
        if type(bad) is enum:
            continue
        with pytest.raises(LogError, match=f"must be one of {enum.__name__} 0..{len(enum) - 1}"):
            Event(kind, replaced(args, index, bad))


BAD_EVENTS = [
    # wrong arity
    (EventKind.INSTRUCTION, (), r"^INSTRUCTION takes 1 args \(count\), got 0$"),
    (EventKind.INSTRUCTION, (1, 2), "takes 1 args"),
    (EventKind.INTERRUPT, (0,), r"^INTERRUPT takes no args, got 1$"),
    (EventKind.EXCEPTION, (0,), "takes no args"),
    (EventKind.END, (b"",), "takes no args"),
    (EventKind.ASYNC, (), "ASYNC takes a subkind"),
    (EventKind.ASYNC, (AsyncKind.BH,), r"^ASYNC BH takes 2 args \(subkind, id\), got 1$"),
    (EventKind.ASYNC, (AsyncKind.CHAR_READ, 0), "ASYNC CHAR_READ takes 3 args"),
    (EventKind.ASYNC, (AsyncKind.BLOCK, 0, 1, 2), "ASYNC BLOCK takes 3 args"),
    (EventKind.CHAR_WRITE, (1,), "CHAR_WRITE takes 2 args"),
    (EventKind.CLOCK, (LogClock.HOST,), "CLOCK takes 2 args"),
    (EventKind.SHUTDOWN, (), "SHUTDOWN takes 1 args"),
    (EventKind.CHECKPOINT, (0, 0), "CHECKPOINT takes 1 args"),
    # bools are not ints
    (EventKind.INSTRUCTION, (True,), "a bool"),
    (EventKind.CHAR_WRITE, (True, 0), "CHAR_WRITE result must be an int"),
    (EventKind.ASYNC, (AsyncKind.BH, False), "ASYNC BH id must be an int"),
    (EventKind.SHUTDOWN, (False,), "SHUTDOWN cause must be one of"),
    # str (or a mutable buffer) where bytes belong
    (EventKind.RANDOM, ("x",), r"^RANDOM data must be bytes, got a str"),
    (EventKind.RANDOM, (bytearray(b"x"),), "must be bytes, got a bytearray"),
    (EventKind.RANDOM, (memoryview(b"x"),), "must be bytes"),
    (EventKind.ASYNC, (AsyncKind.CHAR_READ, 0, "hi"), "ASYNC CHAR_READ data must be bytes"),
    (EventKind.ASYNC, (AsyncKind.NET, 0, None), "ASYNC NET packet must be bytes, got nil"),
    (EventKind.ASYNC, (AsyncKind.CHAR_READ, 0, b""), "must be 1..16777216 bytes long, got 0"),
    # bytes where ints belong, and other types
    (EventKind.INSTRUCTION, (b"\x01",), "must be an int"),
    (EventKind.INSTRUCTION, (1.0,), "got a float"),
    (EventKind.INSTRUCTION, (10**5000,), "got an int of 16610 bits"),
    (EventKind.CLOCK, (LogClock.HOST, 1 << 63), r"in -2\*\*63\.\.2\*\*63-1"),
    # a member of another enum
    (EventKind.CHECKPOINT, (ShutdownCause.GUEST_PASS,), "got ShutdownCause.GUEST_PASS"),
    (EventKind.ASYNC, (LogClock.HOST, 0), "ASYNC subkind must be one of AsyncKind"),
    (EventKind.ASYNC, (9, 0), r"^ASYNC subkind must be one of AsyncKind 0\.\.4, got 9$"),
]


@pytest.mark.parametrize(("kind", "args", "message"), BAD_EVENTS)
def test_bad_events_are_refused(kind: EventKind, args: tuple, message: str) -> None:
    with pytest.raises(LogError, match=message):
        Event(kind, args)


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        (10, (), r"^unknown event kind 10$"),
        (-1, (), "unknown event kind -1"),
        (True, (), "event kind must be an EventKind or int, got a bool"),
        ("INSTRUCTION", (1,), "got a str"),
        (AsyncKind.BH, (1,), "got AsyncKind.BH"),
        (EventKind.INSTRUCTION, [1], r"^INSTRUCTION args must be a tuple, got list$"),
    ],
)
def test_bad_kinds_and_args_containers(kind: object, args: object, message: str) -> None:
    with pytest.raises(LogError, match=message):
        Event(kind, args)  # type: ignore[arg-type]


def test_log_error_is_a_value_error() -> None:
    assert issubclass(LogError, ValueError)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((b"ab", 0), "config_hash must be a str"),
        (("", 0), "config_hash must be a str of 1..256 characters, got 0 characters"),
        (("a" * 257, 0), "got 257 characters"),
        ((HASH, -1), r"icount_shift must be an int in 0\.\.10, got -1"),
        ((HASH, 11), "icount_shift must be an int"),
        ((HASH, True), "got a bool"),
        ((HASH, 0, 2), r"format must be an int in 1\.\.1, got 2"),
        ((HASH, 0, 0), "format must be"),
    ],
)
def test_bad_headers_are_refused(fields: tuple, message: str) -> None:
    with pytest.raises(LogError, match=message):
        LogHeader(*fields)


# -- readable forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (Event.instruction(1234), "INSTRUCTION 1234"),
        (Event.interrupt(), "INTERRUPT"),
        (Event.exception(), "EXCEPTION"),
        (
            Event.async_(AsyncKind.CHAR_READ, 0, b"hello"),
            'ASYNC CHAR_READ backend=0 data=68656c6c6f ("hello")',
        ),
        (
            Event.async_(AsyncKind.CHAR_READ, 1, b'a"\n'),
            r'ASYNC CHAR_READ backend=1 data=61220a ("a\"\n")',
        ),
        (Event.async_(AsyncKind.NET, 2, b"\x00\xff"), "ASYNC NET backend=2 packet=00ff"),
        (Event.async_(AsyncKind.NET, 2, b""), "ASYNC NET backend=2 packet=(empty)"),
        (Event.async_(AsyncKind.BH, 5), "ASYNC BH id=5"),
        (Event.async_(AsyncKind.BH_ONESHOT, 6), "ASYNC BH_ONESHOT id=6"),
        (Event.async_(AsyncKind.BLOCK, 3, 9), "ASYNC BLOCK backend=3 request_id=9"),
        (Event.shutdown(ShutdownCause.GUEST_FAIL), "SHUTDOWN GUEST_FAIL"),
        (Event.char_write(5, 4), "CHAR_WRITE result=5 accepted=4"),
        (Event.clock(LogClock.HOST, 1700000000000000000), "CLOCK HOST 1700000000000000000"),
        (Event.random(b"abc"), 'RANDOM data=616263 ("abc")'),
        (Event.random(bytes(100)), "RANDOM data=" + "00" * 32 + "... (100 bytes)"),
        (Event.checkpoint(LogCheckpoint.CLOCK_VIRTUAL), "CHECKPOINT CLOCK_VIRTUAL"),
        (Event.end(), "END"),
    ],
)  # fmt: skip
def test_str(event: Event, text: str) -> None:
    assert str(event) == text


def test_dump_lines() -> None:
    events = [
        Event.instruction(5),
        Event.async_(AsyncKind.CHAR_READ, 0, b"hello"),
        Event.instruction(10),
        Event.clock(LogClock.HOST, 42),
        Event.random(bytes(100)),
        Event.instruction(1000),
        Event.checkpoint(LogCheckpoint.CLOCK_HOST),
        Event.shutdown(ShutdownCause.GUEST_PASS),
        Event.end(),
    ]
    lines = list(dump_lines(read_log(log_bytes(events))))
    assert lines[0] == (f"replay log format 1, config {HASH}, icount shift 3, 9 events, ended")
    assert len(lines) == 1 + len(events)
    parsed = [re.fullmatch(r"(\d+)  icount +(\d+)  (.*)", line) for line in lines[1:]]
    assert all(parsed)
    assert [int(m[1]) for m in parsed if m] == list(range(len(events)))
    assert [int(m[2]) for m in parsed if m] == [5, 5, 15, 15, 15, 1015, 1015, 1015, 1015]
    assert [m[3] for m in parsed if m] == [str(e) for e in events]
    assert 'ASYNC CHAR_READ backend=0 data=68656c6c6f ("hello")' in lines[2]
    assert "... (100 bytes)" in lines[5]

    cut = list(dump_lines(read_log(log_bytes(events[:3])[:-1])))
    assert cut[0].endswith("2 events, truncated")
    assert cut[-1] == "(truncated: incomplete bytes after event 1)"
    unended = list(dump_lines(read_log(log_bytes(events[:2]))))
    assert unended[0].endswith("2 events, not ended (no END)")
    empty = list(dump_lines(read_log(HEADER_BYTES)))
    assert empty == [
        f"replay log format 1, config {HASH}, icount shift 3, 0 events, not ended (no END)"
    ]


def test_log_stats() -> None:
    events = [*ONE_OF_EACH]
    stats = log_stats(read_log(SAMPLE))
    assert stats.events == len(events)
    assert stats.instructions == 301
    assert stats.header_bytes == len(HEADER_BYTES)
    assert stats.total_bytes == len(SAMPLE)
    assert stats.bytes_per_event == (len(SAMPLE) - len(HEADER_BYTES)) / len(events)
    assert stats.per_kind[EventKind.INSTRUCTION] == 2
    assert stats.per_kind[EventKind.ASYNC] == 5
    assert sum(stats.per_kind.values()) == len(events)
    assert stats.bytes_per_kind[EventKind.END] == 1 + 1  # fixarray(1) + fixint 9
    empty = log_stats(read_log(HEADER_BYTES))
    assert (empty.events, empty.bytes_per_event, empty.total_bytes) == (0, 0.0, len(HEADER_BYTES))


# -- header checks -------------------------------------------------------------------------


def test_check_header() -> None:
    check_header(HEADER, config_hash=HASH, icount_shift=3)
    with pytest.raises(LogError, match=r"^replay log icount shift 3 is not the machine's 0$"):
        check_header(HEADER, config_hash=HASH, icount_shift=0)
    other = "fedcba9876543210" * 4
    message = (
        r"^replay log is of machine configuration 0123456789abcdef\.\.\., "
        r"not this machine's fedcba9876543210\.\.\.$"
    )
    with pytest.raises(LogError, match=message):
        check_header(HEADER, config_hash=other, icount_shift=3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"^not a detfuzz replay log: empty$"),
        (b"hello world", "^not a detfuzz replay log: bad magic$"),
        (header_bytes(magic=b"detfuzz-savevm"), "bad magic"),
        (header_bytes(magic="detfuzz-rr-log"), "bad magic"),  # str, not bytes
        (header_bytes(magic=DROP), "bad magic"),
        (wire(MAGIC, 1, HASH, 3), "bad magic"),
        (HEADER_BYTES[:-1], "^not a detfuzz replay log: truncated header$"),
        (b"\xc1", "undecodable header"),
        (
            header_bytes(format=2),
            r"^replay log format 2 is newer than this detfuzz supports \(1\)$",
        ),
        (header_bytes(format=2**64 - 1), "is newer than"),
        (header_bytes(format=0), r"^replay log format 0 is not supported \(1\)$"),
        (header_bytes(format=-1), "is not supported"),
        (header_bytes(format=True), "format version must be an int, got a bool"),
        (header_bytes(format="1"), "format version must be an int, got a str"),
        (header_bytes(format=DROP), "format version must be an int, got nil"),
        (header_bytes(extra=1), r"^replay log header: unknown key 'extra'$"),
        (header_bytes(icount_shift=DROP), r"^replay log header: missing key 'icount_shift'$"),
        (header_bytes(config_hash=DROP), "missing key 'config_hash'"),
        (header_bytes(config_hash=b"ab"), "config_hash must be a str"),
        (header_bytes(config_hash=7), "config_hash must be a str"),
        (header_bytes(config_hash="x" * 300), "undecodable header"),
        (header_bytes(icount_shift="3"), "icount_shift must be an int"),
        (header_bytes(icount_shift=1.0), "icount_shift must be an int"),
        (header_bytes(icount_shift=99), "icount_shift must be an int in 0..10"),
        (msgpack.packb({1: 2}), "undecodable header"),  # non-str keys
    ],
)
def test_bad_log_headers(data: bytes, message: str) -> None:
    with pytest.raises(LogError, match=message):
        read_log(data)


# -- bad events on the wire ----------------------------------------------------------------

AT = len(HEADER_BYTES)


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (wire(42), rf"^replay log event 0 at byte {AT}: unknown event kind 42$"),
        (wire(-3, 1), "unknown event kind -3"),
        (wire(True), "event kind must be an EventKind or int, got a bool"),
        (wire("INSTRUCTION", 1), "event kind must be an EventKind or int, got a str"),
        (wire(3, 9, 0), "ASYNC subkind must be one of AsyncKind"),
        (wire(3), "ASYNC takes a subkind"),
        (wire(4, 4), "SHUTDOWN cause must be one of ShutdownCause 0..3, got 4"),
        (wire(6, 1, 0), "CLOCK clock must be one of LogClock"),
        (wire(8, 4), "CHECKPOINT checkpoint must be one of LogCheckpoint"),
        (wire(0, 0), "INSTRUCTION count must be an int in 1..2\\*\\*64-1, got 0"),
        (wire(0, 1.5), "got a float"),
        (wire(0, None), "got nil"),
        (wire(0, True), "got a bool"),
        (wire(0, [1]), "got a list"),
        (wire(0, {"a": 1}), "got a dict"),
        (wire(0, 1, 2), "INSTRUCTION takes 1 args"),
        (wire(7, "text"), "RANDOM data must be bytes, got a str"),
        (wire(3, 2, 0, b""), "ASYNC CHAR_READ data must be 1..16777216 bytes long"),
        (wire(3, 2, 256, b"x"), "ASYNC CHAR_READ backend must be an int in 0..255, got 256"),
        (wire(5, -1, 0), "CHAR_WRITE result must be an int"),
        (msgpack.packb(5), rf"^replay log event 0 at byte {AT}: an event must be a msgpack array"),
        (msgpack.packb({"kind": 0}), "an event must be a msgpack array, got a dict"),
        (msgpack.packb(b"\x00", use_bin_type=True), "got a bytes"),
        (msgpack.packb([]), "got an empty one"),
        (wire(7, msgpack.ExtType(1, b"x")), "undecodable"),
        (b"\xc1", "undecodable"),
        (b"\x91" * 5000 + b"\x00", "undecodable"),  # deeper than msgpack's stack
        (wire(*range(17)), "undecodable"),  # longer than any event
    ],
)
def test_bad_events_on_the_wire(tail: bytes, message: str) -> None:
    with pytest.raises(LogError, match=message):
        read_log(HEADER_BYTES + tail)


def test_errors_name_the_event_index_and_byte_offset() -> None:
    events = ONE_OF_EACH[:5]
    data = log_bytes(events) + wire(42)
    at = len(log_bytes(events))
    with pytest.raises(
        LogError, match=rf"^replay log event 5 at byte {at}: unknown event kind 42$"
    ):
        read_log(data)


def test_nothing_may_follow_end() -> None:
    data = log_bytes([Event.instruction(1), Event.end()])
    message = rf"^replay log event 2 at byte {len(data)}: data after END \(event 1\)$"
    for tail in (encode_event(Event.instruction(1)), encode_event(Event.end()), b"\x92", b"\x00"):
        with pytest.raises(LogError, match=message):
            read_log(data + tail)


# Length prefixes no writer writes: msgpack only checks a byte string's length once all its
# bytes arrived, so a cut-short one must not pass as truncation (it would hide what follows).
HOSTILE = [
    (b"\x92\x07\xc6\xff\xff\xff\xff" + b"abc", "a byte string of length 4294967295 exceeds"),
    (b"\x92\x07\xc5\xff\xff", None),  # 65535 bytes claimed: could be a cut-short event
    (b"\x92\x07\xc6\x01\x00\x00\x01", "a byte string of length 16777217 exceeds"),
    (b"\x93\x03\x02\xdb\xff\xff\xff\xff", "a string of length 4294967295 exceeds the limit"),
    (b"\xdd\xff\xff\xff\xff", "4294967295 exceeds max_array_len"),
    (b"\xdc\xff\xff", "exceeds max_array_len"),
    (b"\xdf\xff\xff\xff\xff", "exceeds max_map_len"),
    (b"\x92\x07\xc9\xff\xff\xff\xff\x01", "undecodable"),
    (b"\x92\x07\xd8\x01", "undecodable"),  # a fixext 16, cut short
    (b"\xc6\xff\xff\xff\xff", "a byte string of length 4294967295 exceeds"),
]


@pytest.mark.parametrize(("tail", "message"), HOSTILE)
def test_hostile_length_prefixes(tail: bytes, message: str | None) -> None:
    for after in (b"", encode_event(Event.instruction(1)) * 50):
        data = HEADER_BYTES + encode_event(Event.interrupt()) + tail + after
        tracemalloc.start()
        try:
            if message is None:
                log = read_log(data)
                assert log.truncated
                assert log.events == (Event.interrupt(),)
            else:
                at = AT + 2
                with pytest.raises(
                    LogError, match=rf"^replay log event 1 at byte {at}: .*{message}"
                ):
                    read_log(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * MB  # msgpack's own buffer is 1 MiB; nothing sized by the claim


def test_hostile_length_in_the_header() -> None:
    with pytest.raises(LogError, match="not a detfuzz replay log"):
        read_log(b"\xdf\xff\xff\xff\xff")
    with pytest.raises(LogError, match="not a detfuzz replay log"):
        read_log(b"\xc6\xff\xff\xff\xff" + bytes(100))


# -- truncation and corruption -----------------------------------------------------------------


def test_truncation_at_every_byte() -> None:
    ends = [AT]
    for event in ONE_OF_EACH:
        ends.append(ends[-1] + len(encode_event(event)))
    assert ends[-1] == len(SAMPLE)
    for cut in range(len(SAMPLE) + 1):
        data = SAMPLE[:cut]
        if cut < AT:
            with pytest.raises(LogError, match="not a detfuzz replay log"):
                read_log(data)
            continue
        whole = sum(1 for end in ends[1:] if end <= cut)
        log = read_log(data)
        assert log.events == tuple(ONE_OF_EACH[:whole])
        assert log.truncated == (cut not in ends)
        assert log.ended == (cut == len(SAMPLE))
        if log.truncated:
            message = rf"^replay log is truncated inside event {whole} at byte {ends[whole]}$"
            with pytest.raises(LogError, match=message):
                read_log(data, allow_truncated=False)
        else:
            assert read_log(data, allow_truncated=False) == log


def read_or_log_error(data: bytes) -> Log | None:
    """read_log's result, or None for a LogError; any other exception fails the test. A
    log that reads must be usable: its events re-encode, print, dump and count."""
    try:
        log = read_log(data)
    except LogError as exc:
        assert str(exc)
        assert "\n" not in str(exc)
        return None
    for event in log.events:
        assert decode_event(encode_event(event)) == event
    assert len(list(dump_lines(log))) >= 1 + len(log.events)
    assert log_stats(log).events == len(log.events)
    return log


EDITS = st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255))


@given(st.lists(EDITS, min_size=1, max_size=4))
@example([(AT + 1, 0xC6)])
@example([(AT, 0xDD)])
def test_replaced_bytes(edits: list[tuple[int, int]]) -> None:
    data = bytearray(SAMPLE)
    for pos, value in edits:
        data[pos] = value
    read_or_log_error(bytes(data))


@given(st.integers(0, len(SAMPLE) - 1), st.integers(0, 7))
def test_flipped_bits(pos: int, bit: int) -> None:
    data = bytearray(SAMPLE)
    data[pos] ^= 1 << bit
    read_or_log_error(bytes(data))


@given(st.integers(0, len(SAMPLE)), st.binary(min_size=0, max_size=8), st.integers(0, 8))
def test_spliced_bytes(pos: int, inserted: bytes, deleted: int) -> None:
    read_or_log_error(SAMPLE[:pos] + inserted + SAMPLE[pos + deleted :])


@given(st.binary(max_size=64))
def test_random_tails_and_random_files(tail: bytes) -> None:
    read_or_log_error(HEADER_BYTES + tail)
    read_or_log_error(tail)


def test_read_log_input_types() -> None:
    assert read_log(bytearray(SAMPLE)) == read_log(SAMPLE)
    assert read_log(memoryview(SAMPLE)) == read_log(SAMPLE)
    with pytest.raises(LogError, match="a replay log is bytes, got str"):
        read_log("detfuzz")  # type: ignore[arg-type]


def test_decode_event_refuses_anything_but_one_whole_event() -> None:
    data = encode_event(Event.instruction(5))
    with pytest.raises(LogError, match="1 trailing bytes"):
        decode_event(data + b"\x00")
    with pytest.raises(LogError, match="truncated or empty"):
        decode_event(data[:-1])
    with pytest.raises(LogError, match="truncated or empty"):
        decode_event(b"")
    with pytest.raises(LogError, match="unknown event kind 12"):
        decode_event(wire(12))
    with pytest.raises(LogError, match="exceeds the limit"):
        decode_event(b"\x92\x07\xc6\xff\xff\xff\xff")
    with pytest.raises(LogError, match="must be an Event"):
        encode_event((EventKind.END, ()))  # type: ignore[arg-type]
    with pytest.raises(LogError, match="must be a LogHeader"):
        encode_header({"config_hash": HASH})  # type: ignore[arg-type]


def test_read_log_file(tmp_path) -> None:
    path = tmp_path / "run.rrlog"
    path.write_bytes(SAMPLE)
    assert read_log_file(path) == read_log(SAMPLE)
    assert read_log_file(str(path)).ended
    path.write_bytes(SAMPLE[:-1])
    with pytest.raises(LogError, match="truncated inside event"):
        read_log_file(path, allow_truncated=False)
    missing = tmp_path / "missing.rrlog"
    with pytest.raises(LogError, match=rf"^cannot read replay log {re.escape(str(missing))}: "):
        read_log_file(missing)
    with pytest.raises(LogError, match="cannot read replay log"):
        read_log_file(tmp_path)


# -- the writer ------------------------------------------------------------------------------


class FlushRecorder(io.BytesIO):
    """A stream that keeps what was on 'disk' (its bytes) at every flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[bytes] = []

    def flush(self) -> None:
        super().flush()
        self.flushed.append(self.getvalue())


def test_writer_streams_a_readable_log() -> None:
    stream = FlushRecorder()
    writer = LogWriter(stream, HEADER)
    assert stream.getvalue() == HEADER_BYTES
    assert (writer.count, writer.bytes_written, len(stream.flushed)) == (0, AT, 1)
    for i, event in enumerate(ONE_OF_EACH):
        writer.write(event)
        data = stream.getvalue()
        assert read_log(data, allow_truncated=False).events == tuple(ONE_OF_EACH[: i + 1])
        assert writer.count == i + 1
        assert writer.bytes_written == len(data)
        # Flushed after every event: a crash now leaves every event written so far.
        assert stream.flushed[-1] == data
        assert len(stream.flushed) == i + 2
    assert stream.getvalue() == SAMPLE
    with pytest.raises(LogError, match="would follow END"):
        writer.write(Event.instruction(1))
    assert stream.getvalue() == SAMPLE
    writer.close()
    writer.close()
    assert stream.getvalue() == SAMPLE  # close writes nothing, END included
    assert not stream.closed  # the caller owns the stream


def test_writer_without_flush_each_and_close() -> None:
    stream = FlushRecorder()
    with LogWriter(stream, HEADER, flush_each=False) as writer:
        writer.write(Event.instruction(7))
        writer.write(Event.interrupt())
        assert stream.flushed == []
    assert len(stream.flushed) == 1
    assert read_log(stream.getvalue()) == Log(
        HEADER, (Event.instruction(7), Event.interrupt()), truncated=False
    )
    with pytest.raises(LogError, match=r"^replay log writer is closed$"):
        writer.write(Event.end())
    assert not read_log(stream.getvalue()).ended  # close does not write END


def test_writer_refuses_what_is_not_an_event_or_header() -> None:
    writer = LogWriter(io.BytesIO(), HEADER)
    with pytest.raises(LogError, match="must be an Event, got tuple"):
        writer.write((EventKind.END, ()))  # type: ignore[arg-type]
    assert writer.count == 0
    with pytest.raises(LogError, match="must be a LogHeader"):
        LogWriter(io.BytesIO(), HASH)  # type: ignore[arg-type]


@given(st.lists(EVENTS, max_size=12))
def test_writer_bytes_are_encode_event_bytes(events: list[Event]) -> None:
    stream = io.BytesIO()
    writer = LogWriter(stream, HEADER, flush_each=False)
    for event in events:
        writer.write(event)
    assert stream.getvalue() == log_bytes(events)
    assert writer.bytes_written == len(stream.getvalue())


def test_writer_in_a_file_survives_a_crash(tmp_path) -> None:
    path = tmp_path / "run.rrlog"
    with open(path, "wb") as stream:
        writer = LogWriter(stream, HEADER)
        for event in ONE_OF_EACH[:4]:
            writer.write(event)
        # No close, no END: what a crash leaves behind, read while the file is still open.
        log = read_log_file(path)
        assert log.events == tuple(ONE_OF_EACH[:4])
        assert not log.truncated and not log.ended
        # A write cut short mid-event: still readable, as truncated.
        stream.write(encode_event(Event.random(b"abc"))[:-1])
        stream.flush()
        log = read_log_file(path)
        assert log.truncated and log.events == tuple(ONE_OF_EACH[:4])
