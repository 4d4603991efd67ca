"""engine.net.traffic: messages counted by method or response class, in a table peers cannot grow."""

from __future__ import annotations

from engine.net.traffic import MAX_KEYS, OTHER, count_message


def test_requests_by_method_and_responses_by_class() -> None:
    counts: dict[bytes, int] = {}
    for data in (b"INVITE sip:1@x SIP/2.0\r\n", b"INVITE sip:2@x SIP/2.0\r\n", b"SIP/2.0 180 Ringing\r\n",
                 b"SIP/2.0 200 OK\r\n", b"SIP/2.0 202 Accepted\r\n", b"\r\n\r\n"):
        count_message(counts, data)
    assert counts == {b"INVITE": 2, b"SIP/2.0 1": 1, b"SIP/2.0 2": 2, OTHER: 1}


def test_invented_methods_stop_growing_the_table_at_max_keys() -> None:
    counts: dict[bytes, int] = {}
    for i in range(MAX_KEYS * 3):
        count_message(counts, b"M%d sip:x SIP/2.0\r\n" % i)
    count_message(counts, b"M0 sip:x SIP/2.0\r\n")  # a token already in the table still counts as itself
    assert len(counts) == MAX_KEYS + 1
    assert counts[b"M0"] == 2
    assert sum(counts.values()) == MAX_KEYS * 3 + 1
