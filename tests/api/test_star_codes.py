"""Star codes, DND/forwarding and queue agents through the admin API (SQLite and PostgreSQL): the table in
force with its defaults, a company's own codes saved and refused with the compiler's field
(company.star_codes.FEATURE), a line's DND and forwards as options (bad targets 422 naming the option),
and a queue's agents with their login and pause as the star codes leave them in the store."""

from __future__ import annotations

import httpx

from engine.store.features import AgentRecord, save_queue_agents
from tests.api.conftest import Api


def _users(client: httpx.Client, *exts: str) -> dict[str, int]:
    ids = {}
    for ext in exts:
        r = client.post("/api/users", json={"first_name": "A", "last_name": ext, "extension": ext})
        assert r.status_code == 201, r.text
    for line in client.get("/api/lines").json():
        ids[line["extension"]] = line["id"]
    return ids


def test_the_table_in_force_and_a_companys_own_codes(api: Api, client: httpx.Client) -> None:
    _users(client, "201")
    table = {row["feature"]: row for row in client.get("/api/star-codes").json()}
    assert table["dnd_on"] == {"feature": "dnd_on", "code": "*78", "default": "*78", "takes_digits": False}
    assert table["queue_login"]["takes_digits"] is True
    r = client.put("/api/star-codes", json={"dnd_on": "*30", "dnd_off": "*31"})
    assert r.status_code == 200, r.text
    codes = {row["feature"]: row["code"] for row in r.json()}
    assert (codes["dnd_on"], codes["dnd_off"], codes["forward_always_on"]) == ("*30", "*31", "*72")
    assert api.store.company().star_codes == (("dnd_off", "*31"), ("dnd_on", "*30"))
    for body, field in (({"dnd_on": "201"}, "company.star_codes.dnd_on"),  # an extension
                        ({"dnd_on": "*77", "dnd_off": "*77"}, "company.star_codes.dnd_off"),
                        ({"dnd_on": "*79"}, "company.star_codes.dnd_off"),  # dnd_off keeps its default *79
                        ({"coffee": "*11"}, "company.star_codes.coffee")):
        r = client.put("/api/star-codes", json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.text, (body, r.text)
    assert client.put("/api/star-codes", json={"dnd_on": 30}).status_code == 400  # not text
    assert api.store.company().star_codes == (("dnd_off", "*31"), ("dnd_on", "*30"))  # nothing changed


def test_dnd_and_forwards_are_line_options(api: Api, client: httpx.Client) -> None:
    ids = _users(client, "201", "202")
    line = f"/api/lines/{ids['201']}"
    options = {"do_not_disturb": True, "forward": {"always": "202", "no_answer": "+4915112345678"}}
    r = client.patch(line, json={"options": options})
    assert r.status_code == 200, r.text
    assert client.get(line).json()["options"] == options
    for bad, field in (({"do_not_disturb": "yes"}, "options.do_not_disturb"),
                       ({"forward": {"sometimes": "202"}}, "options.forward.sometimes"),
                       ({"forward": {"busy": "12"}}, "options.forward.busy")):
        r = client.patch(line, json={"options": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["field"] == field, r.json()
    assert api.store.config_snapshot().line_features["201"].forward_always == "202"


def test_a_queues_agents_with_login_and_pause(api: Api, client: httpx.Client) -> None:
    _users(client, "201", "202")
    spec = {"name": "support", "extension": "600",
            "agents": [{"line": "201"}, {"line": "202", "dynamic": True}]}
    assert client.post("/api/routing/queues", json=spec).status_code == 201
    assert client.get("/api/queues/support/agents").json() == [
        {"line": "201", "dynamic": False, "logged_in": True, "paused": False},
        {"line": "202", "dynamic": True, "logged_in": False, "paused": False},
    ]
    save_queue_agents(api.store, [AgentRecord("support", "202", True, True)])
    assert client.get("/api/queues/support/agents").json()[1] == {
        "line": "202", "dynamic": True, "logged_in": True, "paused": True}
    assert client.get("/api/queues/nowhere/agents").status_code == 404
    bad = {**spec, "name": "sales", "extension": "601", "agents": [{"line": "201", "dynamic": "no"}]}
    r = client.post("/api/routing/queues", json=bad)
    assert r.status_code == 422 and "agents[0].dynamic" in r.json()["field"], r.text
