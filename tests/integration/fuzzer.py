"""SIP fuzzing against a running ``pbx serve`` (issue 18 part 5): seeded mutations of the corpora sent over
UDP and TCP, with the server's liveness probed while they go in.

The seeds are the shared torture corpus (``shared/torture/messages``) and the project's own messages: the
parser's golden messages (``tests/sip/test_parser.py``) and the strict-parsing families, invalid and valid
(``tests/sip/test_strict_parsing.py``). Each fuzzed message is one seed put through one to three
mutations: bit flips, random or SIP-shaped insertions, truncation, a byte range removed, a header line
duplicated (up to 60 times), an enormous header (up to 60 KB), a Content-Length lie, two seeds spliced.
Everything is drawn from one ``random.Random(seed)``: the same seed and count send the same bytes.

UDP goes from one socket in batches; after each batch a valid OPTIONS with its own branch must be answered
(``MARKER_TIMEOUT_S``), which both paces the sender to the server's speed (the server reads one socket's
datagrams in order) and proves the server alive during the run. TCP goes over a series of connections,
``TCP_PER_CONNECTION`` messages each: a mutated Content-Length desynchronises the stream, and the server
closing it is a correct answer, so a connection the server closed is simply replaced. Used by
tests/integration/test_fuzz.py (CI) and bench/fuzz.py (the long run).
"""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
TORTURE_DIR: Final = REPO_ROOT.parent / "shared" / "torture" / "messages"
UDP_MAX: Final = 65_000  # a datagram the loopback carries (65,507 at most)
BATCH: Final = 400  # UDP messages between two markers
MARKER_TIMEOUT_S: Final = 10.0
TCP_PER_CONNECTION: Final = 40

HEADER_NAMES: Final = (b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"Contact", b"Max-Forwards",
                       b"Content-Length", b"Content-Type", b"Authorization", b"Route", b"Record-Route",
                       b"Expires", b"Require", b"Supported", b"i", b"l", b"v", b"X-Fuzz")
TOKENS: Final = (b"\r\n", b"\r\n\r\n", b":", b";", b",", b"<", b">", b"\"", b"\\", b"%00", b"%", b"[", b"]",
                 b"@", b"sip:", b"sips:", b"tel:", b"SIP/2.0", b"SIP/3.0", b" ", b"\t", b"\x00", b"\xff",
                 b"\r", b"\n", b";tag=", b";branch=z9hG4bK", b";rport", b";received=", b"=", b"*",
                 b"4294967296", b"-1", b"999999999999999999999", b"INVITE", b"ACK", b"BYE", b"CANCEL",
                 b"REGISTER", b"\xc3\x28", b"\xe2\x82", b"[::1]", b"[2001:db8:::1]", b"Digest ", b"nonce=")


def project_seeds() -> list[bytes]:
    """The project's own messages: golden parses and the strict-parsing families (valid and invalid)."""
    from tests.sip.test_parser import GOLDENS
    from tests.sip.test_strict_parsing import INVALID, VALID

    return [*GOLDENS.values(), *(case[1] for case in INVALID), *(case[1] for case in VALID)]


def torture_seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted(TORTURE_DIR.glob("*.sip"))] if TORTURE_DIR.is_dir() else []


def all_seeds() -> list[bytes]:
    return torture_seeds() + project_seeds()


# -- mutations (each takes and returns bytes; the RNG is the fuzzer's) --------------------------------------
def _flip_bits(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    if not data:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _insert(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    at = rng.randint(0, len(data))
    what = rng.choice(TOKENS) * rng.randint(1, 4) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 32))
    return data[:at] + what + data[at:]


def _truncate(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    return data[: rng.randint(0, len(data))]


def _delete(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 40):]


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), (sep + body)


def _duplicate_header(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    lines, rest = _lines(data)
    if len(lines) < 2:
        return data
    i = rng.randrange(1, len(lines))
    lines[i:i + 1] = [lines[i]] * rng.choice((2, 2, 3, 10, 60))
    return b"\r\n".join(lines) + rest


def _enormous_header(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    lines, rest = _lines(data)
    size = rng.choice((1_000, 8_000, 30_000, 60_000))
    name = rng.choice(HEADER_NAMES)
    fill = rng.choice((b"a", b"x;", b"<sip:a@b>,", b"%41", b" "))
    value = (fill * (size // len(fill) + 1))[:size]
    lines.insert(rng.randint(1, len(lines)), name + b": " + value)
    return b"\r\n".join(lines) + rest


def _content_length(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    lines, rest = _lines(data)
    value = rng.choice((b"0", b"1", b"-5", b"99999", b"65536", b"abc", b"4294967297", b" 3 ", b""))
    out = [ln for ln in lines if not ln.lower().startswith((b"content-length:", b"l:"))]
    out.append(b"Content-Length: " + value)
    return b"\r\n".join(out) + rest


def _splice(rng: random.Random, data: bytes, seeds: Sequence[bytes]) -> bytes:
    other = rng.choice(seeds)
    return data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)):]


MUTATIONS: Final[tuple[Callable[[random.Random, bytes, Sequence[bytes]], bytes], ...]] = (
    _flip_bits, _flip_bits, _insert, _insert, _truncate, _delete, _duplicate_header, _duplicate_header,
    _enormous_header, _content_length, _splice,
)


class Mutator:
    """An endless, reproducible series of fuzzed messages from ``seeds``."""

    def __init__(self, seeds: Sequence[bytes], seed: int) -> None:
        if not seeds:
            raise ValueError("no seed messages")
        self.seeds = list(seeds)
        self.rng = random.Random(seed)

    def next(self, limit: int = UDP_MAX) -> bytes:
        rng = self.rng
        data = rng.choice(self.seeds)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            data = rng.choice(MUTATIONS)(rng, data, self.seeds)
        return data[:limit]


# -- the run ------------------------------------------------------------------------------------------
def marker(local: tuple[str, int], server: tuple[str, int], n: int) -> tuple[bytes, bytes]:
    """A valid OPTIONS from ``local`` and the branch its answer carries."""
    branch = f"z9hG4bKmark{n}x{os.getpid()}".encode()
    host, port = local
    msg = (f"OPTIONS sip:{server[0]}:{server[1]} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP {host}:{port};branch={branch.decode()};rport\r\n"
           "Max-Forwards: 70\r\n"
           f"From: <sip:fuzz@{host}>;tag=fz\r\nTo: <sip:{server[0]}>\r\n"
           f"Call-ID: mark{n}@{host}\r\nCSeq: {n + 1} OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
    return msg, branch


@dataclass
class FuzzStats:
    udp_sent: int = 0
    tcp_sent: int = 0
    tcp_connections: int = 0
    tcp_closed_by_server: int = 0
    answers: int = 0
    markers: int = 0
    max_marker_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.udp_sent + self.tcp_sent


def _drain(sock: socket.socket, branch: bytes | None, deadline: float) -> tuple[int, bool]:
    """Read what is waiting on ``sock``; with ``branch``, until its answer came (or ``deadline``)."""
    answers, found = 0, False
    while True:
        wait = 0.0 if branch is None or found else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([sock], [], [], wait)
        if not ready:
            return answers, found
        try:
            data = sock.recv(65535)
        except (BlockingIOError, ConnectionRefusedError):
            continue
        answers += 1
        if branch is not None and branch in data:
            found = True


def fuzz_udp(server: tuple[str, int], mutator: Mutator, count: int, stats: FuzzStats,
             *, source: str = "127.0.0.1", on_batch: Callable[[int], None] | None = None) -> None:
    """Send ``count`` fuzzed datagrams from one socket, a marker OPTIONS after each ``BATCH``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        local = sock.getsockname()
        batches = 0
        while stats.udp_sent < count and not stats.failures:
            for _ in range(min(BATCH, count - stats.udp_sent)):
                sock.sendto(mutator.next(), server)
                stats.udp_sent += 1
            msg, branch = marker(local, server, batches)
            started = time.monotonic()
            sock.sendto(msg, server)
            answers, found = _drain(sock, branch, started + MARKER_TIMEOUT_S)
            stats.answers += answers
            took = time.monotonic() - started
            if not found:
                stats.failures.append(f"no answer to the marker OPTIONS after {stats.udp_sent} UDP messages "
                                      f"within {MARKER_TIMEOUT_S} s")
                return
            stats.markers += 1
            stats.max_marker_s = max(stats.max_marker_s, took)
            batches += 1
            if on_batch is not None:
                on_batch(stats.sent)


def fuzz_tcp(server: tuple[str, int], mutator: Mutator, count: int, stats: FuzzStats,
             *, source: str = "127.0.0.1") -> None:
    """Send ``count`` fuzzed messages over TCP, ``TCP_PER_CONNECTION`` per connection."""
    while stats.tcp_sent < count and not stats.failures:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((source, 0))
            sock.settimeout(10.0)
            try:
                sock.connect(server)
            except OSError as exc:
                stats.failures.append(f"TCP connect refused after {stats.tcp_sent} TCP messages: {exc}")
                return
            stats.tcp_connections += 1
            sock.setblocking(False)
            for _ in range(min(TCP_PER_CONNECTION, count - stats.tcp_sent)):
                data = mutator.next(limit=70_000)
                try:
                    _send_all(sock, data)
                    stats.tcp_sent += 1
                    stats.answers += _drain_stream(sock)
                except OSError:  # closed by the server: a framing error is a correct end
                    stats.tcp_closed_by_server += 1
                    break
        finally:
            sock.close()


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    deadline = time.monotonic() + 10.0
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError("the server stopped reading") from None
            _drain_stream(sock)
            select.select([sock], [sock], [], 0.05)


def _drain_stream(sock: socket.socket) -> int:
    got = 0
    while True:
        try:
            chunk = sock.recv(65535)
        except BlockingIOError:
            return got
        if not chunk:
            raise ConnectionResetError("closed by the server")
        got += chunk.count(b"SIP/2.0 ")


def run(server: tuple[str, int], *, udp: int, tcp: int, seed: int,
        on_batch: Callable[[int], None] | None = None) -> FuzzStats:
    """Fuzz ``server`` with ``udp`` datagrams and ``tcp`` stream messages at once (two threads)."""
    seeds = all_seeds()
    stats = FuzzStats()
    tcp_thread = threading.Thread(target=fuzz_tcp, args=(server, Mutator(seeds, seed + 1), tcp, stats),
                                  daemon=True)
    tcp_thread.start()
    fuzz_udp(server, Mutator(seeds, seed), udp, stats, on_batch=on_batch)
    tcp_thread.join(timeout=600)
    if tcp_thread.is_alive() or (stats.tcp_sent < tcp and not stats.failures):
        stats.failures.append(f"the TCP fuzzer stopped after {stats.tcp_sent} of {tcp} messages")
    return stats


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
