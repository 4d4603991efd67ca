"""One change the database refuses must not take the rest of its batch down with it."""

from __future__ import annotations

from pathlib import Path

from engine.sip.parser import parse_message
from engine.sip.registrar import Binding
from engine.sip.transaction import Peer
from engine.store import BindingRecord, BindingWriter, Store
from engine.store.bindings import binding_record, storable


def record(aor: str, user_agent: str) -> BindingRecord:
    return BindingRecord(aor=aor, contact=f"sip:{aor}@192.0.2.1", expires_at=2e9, q=1.0, call_id="c", cseq=1,
                         source_transport="UDP", source_host="192.0.2.1", source_port=5060,
                         user_agent=user_agent)


def undecodable_user_agent() -> str:
    msg = parse_message(b"OPTIONS sip:x SIP/2.0\r\nUser-Agent: Phone\xff 1.0\r\nContent-Length: 0\r\n\r\n")
    value = msg.get("user-agent")
    assert value is not None and "\udcff" in value  # kept as a lone surrogate: re-serialises byte for byte
    return value


def test_a_row_the_database_refuses_does_not_sink_the_batch(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    writer = BindingWriter(store, flush_interval_s=0.05)
    writer.start()
    try:
        for i in range(200, 210):
            writer.upsert(record(str(i), "good phone"))
        writer.upsert(record("299", undecodable_user_agent()))  # raw surrogate: SQLite cannot encode it
        writer.flush(timeout=60)
    finally:
        writer.stop()
    stored = {r.aor for r in store.list_bindings()}
    assert stored == {str(i) for i in range(200, 210)}
    store.close()


def test_bindings_from_the_registrar_are_made_storable(tmp_path: Path) -> None:
    ua = undecodable_user_agent()
    b = Binding("201", "sip:201@192.0.2.1", 2e9, user_agent=ua, source=Peer("UDP", "192.0.2.1", 5060))
    rec = binding_record(b)
    assert rec.user_agent == storable(ua) == "Phone\ufffd 1.0"
    store = Store.open(tmp_path)
    store.write_bindings([rec])
    assert [r.user_agent for r in store.list_bindings()] == ["Phone\ufffd 1.0"]
    store.close()
