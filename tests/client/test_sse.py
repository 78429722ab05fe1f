"""The server-sent events parser."""

from __future__ import annotations

from stepline_client.sse import ServerSentEvent, SSEParser


def parse(text: str) -> tuple[list[ServerSentEvent], SSEParser]:
    parser = SSEParser()
    events = [e for line in text.split("\n") if (e := parser.feed(line)) is not None]
    return events, parser


def test_fields_comments_and_multiline_data() -> None:
    events, parser = parse(
        ': ping\nretry: 1500\nid: 1\nevent: run.queued\ndata: {"a":\ndata: 1}\n\n'
        "data:plain\n\n: ping\n\nevent: stream.closing\ndata: {}\n\n"
    )

    assert events == [
        ServerSentEvent(event="run.queued", data='{"a":\n1}', id="1", retry=1500),
        ServerSentEvent(event="message", data="plain"),
        ServerSentEvent(event="stream.closing", data="{}"),
    ]
    assert parser.comments == 2
    assert parser.retry == 1500


def test_a_block_cut_off_by_the_end_is_not_dispatched() -> None:
    events, _ = parse("id: 1\ndata: x")

    assert events == []
