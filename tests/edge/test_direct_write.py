"""Live frames written straight to an idle stream's socket (edge.sse.DirectWriter), and the
hand-over to the queued path when the socket pushes back: pure logic, no server.

The wire side (valid chunked encoding, every event once and in order, slow clients still cut)
is covered by the edge tests that read real streams (test_stream, test_live, test_big_frame)."""

from __future__ import annotations

from types import SimpleNamespace

from edge import sse
from edge.fanout import Client


class FakeWriter:
    """Accepts writes while ``ok``."""

    def __init__(self) -> None:
        self.ok = True
        self.out: list[bytes] = []

    def write(self, chunked: bytes) -> bool:
        if not self.ok:
            return False
        self.out.append(chunked)
        return True


def _parked(writer: FakeWriter) -> Client:
    c = Client(None, 64 * 1024, lambda: None)
    c.end_replay(0)
    c.writer = writer  # type: ignore[assignment]
    c.parked = True
    return c


def test_a_parked_stream_gets_frames_written_without_a_wake_up() -> None:
    w = FakeWriter()
    c = _parked(w)
    f1, f2 = sse.event_frame(1, b"{}"), sse.event_frame(2, b"{}")
    assert c.push(1, "a", f1, sse.chunk(f1)) and c.push(2, "a", f2)
    assert w.out == [sse.chunk(f1), sse.chunk(f2)]
    assert not c.queue and not c.wakeup.is_set()


def test_a_refused_write_queues_and_later_frames_follow_it_in_order() -> None:
    w = FakeWriter()
    c = _parked(w)
    w.ok = False
    f1, f2 = sse.event_frame(1, b"{}"), sse.event_frame(2, b"{}")
    assert c.push(1, "a", f1)
    # The socket drains before the stream runs: f2 must still not overtake f1.
    w.ok = True
    assert c.push(2, "a", f2)
    assert w.out == [] and c.wakeup.is_set() and not c.parked
    assert c.take() == f1 + f2


def test_an_awake_stream_or_one_without_writer_queues() -> None:
    w = FakeWriter()
    c = _parked(w)
    c.parked = False
    f1 = sse.event_frame(1, b"{}")
    assert c.push(1, "a", f1) and c.queue and w.out == []
    c2 = Client(None, 64 * 1024, lambda: None)
    c2.end_replay(0)
    c2.parked = True  # no writer (not uvicorn's httptools protocol)
    assert c2.push(1, "a", f1) and c2.take() == f1


def test_filters_and_closed_streams_apply_before_writing() -> None:
    w = FakeWriter()
    c = _parked(w)
    c.item_token = "b"
    assert not c.push(1, "a", sse.event_frame(1, b"{}"))
    c.close("bye")
    assert not c.push(2, "b", sse.event_frame(2, b"{}"))
    assert w.out == []


def _cycle(**state: bool) -> SimpleNamespace:
    out: list[bytes] = []
    transport = SimpleNamespace(
        is_closing=lambda: state.get("closing", False), write=out.append, out=out
    )
    return SimpleNamespace(
        flow=SimpleNamespace(write_paused=state.get("paused", False)),
        transport=transport,
        disconnected=state.get("disconnected", False),
        response_complete=state.get("complete", False),
    )


def test_direct_writer_writes_only_to_a_writable_open_response() -> None:
    ok = _cycle()
    assert sse.DirectWriter(ok).write(b"x") and ok.transport.out == [b"x"]
    for state in ("paused", "disconnected", "complete", "closing"):
        cyc = _cycle(**{state: True})
        assert not sse.DirectWriter(cyc).write(b"x") and cyc.transport.out == []


def test_direct_writer_only_for_uvicorns_httptools_cycle() -> None:
    assert sse.DirectWriter.of(None) is None
    assert sse.DirectWriter.of(_cycle()) is None


def test_chunk_is_http_chunked_framing() -> None:
    assert sse.chunk(b"hello") == b"5\r\nhello\r\n"
    assert sse.chunk(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
