"""Fixtures that run a real ``pbx serve`` on 127.0.0.1 and real peers against it.

``pbx_factory(users=..., preload=True, db=None)`` imports a test company (``pbx import``) into a fresh
data dir, starts the server on a free UDP+TCP port, waits until it answers OPTIONS and returns a
``PbxServer`` (host, port, data_dir, log_path, restart(), reg_list()); ``db`` puts the store in that
database (``--db``). At teardown every server is SIGTERMed and must exit 0 within the deadline with no
Traceback in its log. ``peers`` starts peer processes and always stops them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from .harness import SMALL_USERS, LineUser, PbxServer, PeerProcess, run_pbx, write_company_file

ServerFactory = Callable[..., PbxServer]


@pytest.fixture
def pbx_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    servers: list[PbxServer] = []

    def make(
        users: Sequence[LineUser] = SMALL_USERS,
        *,
        preload: bool = True,
        log_level: str = "debug",
        name: str = "pbx",
        extra_args: Sequence[str] = (),
        company_file: Path | None = None,
        db: str | None = None,
    ) -> PbxServer:
        data_dir = tmp_path / f"{name}-data"
        db_args = [] if db is None else ["--db", db]
        extra_args = [*db_args, *extra_args]
        if preload:
            company = company_file or write_company_file(tmp_path / f"{name}-company.yaml", users)
            run_pbx("import", str(company), "--data-dir", str(data_dir), *db_args)
        else:
            data_dir.mkdir()
        server = PbxServer(data_dir, tmp_path / f"{name}.log", log_level=log_level, extra_args=extra_args)
        servers.append(server)
        server.start()
        return server

    yield make
    problems: list[str] = []
    for server in servers:
        problems += server.shutdown_problems()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def pbx_server(pbx_factory: ServerFactory) -> PbxServer:
    """A running server with the ten test lines 1000..1009 (password ``secret-<ext>``, realm pbx.test)."""
    return pbx_factory()


@pytest.fixture
def server_for(pbx_factory: ServerFactory) -> Callable[[str], PbxServer]:
    """A server challenging with ``algorithm``: MD5 is the default; others are offered first with
    ``--digest ALG,MD5`` (the SHA-256 deployments' setting)."""

    def get(algorithm: str) -> PbxServer:
        if algorithm == "MD5":
            return pbx_factory()
        return pbx_factory(name=f"pbx-{algorithm.lower()}", extra_args=("--digest", f"{algorithm},MD5"))

    return get


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Callable[..., PeerProcess]]:
    started: list[PeerProcess] = []

    def start(name: str, argv: list[str], **kw: object) -> PeerProcess:
        peer = PeerProcess(name, argv, tmp_path / f"{name}.stderr", **kw)  # type: ignore[arg-type]
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.close()
