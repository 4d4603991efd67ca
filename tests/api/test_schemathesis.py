"""schemathesis against /api/openapi.json of a running server: no input gives a 5xx.

Every operation gets a bounded number of generated requests (with the super admin's token, so they get
past authentication into validation and the store), on SQLite and PostgreSQL (which refuses NUL in text
and out-of-range integers differently). ``EXAMPLES`` keeps one run under a minute on 2 vCPUs.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from tests.api.conftest import Api

EXAMPLES = 25


def test_no_5xx_for_generated_requests(api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{api.base_url}/api/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"schemathesis cannot read an operation: {result.err()}"
        operations.append(result.ok())
    assert len(operations) >= 47
    # Some state for the generated ids and names to hit (most requests will still be 404/422).
    with api.client() as c:
        c.post(
            "/api/users", json={"first_name": "S", "last_name": "T", "desk_phone": {"mac": "001565000099"}}
        )
        c.post("/api/numbers/pool", json={"numbers": ["+12125550123"]})
        c.post("/api/numbers/orders", json={"quantity": 1})
        c.post(
            "/api/dial-plans",
            json={"name": "main", "graph": {"start": "x", "nodes": {"x": {"type": "hangup"}}}},
        )
    failures: list[str] = []
    statuses: list[int] = []
    auth = {"Authorization": f"Bearer {api.token}"}

    for operation in operations:
        if operation.method.upper() == "DELETE" and operation.path == "/api/tokens/{token_id}":
            continue  # it would revoke the token this test runs with (tests/api/test_permissions covers it)
        strategy = operation.as_strategy()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=strategy, data=st.data())
        def check(case: Any, data: st.DataObject) -> None:
            case.headers = {**(case.headers or {}), **auth}
            response = case.call(base_url=api.base_url, timeout=30)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.body!r} -> {response.status_code}"
                )

        check()
    assert failures == [], "\n".join(failures[:20])
    assert len(statuses) >= len(operations) and any(200 <= s < 300 for s in statuses)
    assert any(s == 422 for s in statuses) and any(s == 400 for s in statuses)
