"""schemathesis over the console's JSON API (issue 18): requests generated from its own
OpenAPI document, valid and invalid (negative data: wrong types, out-of-range numbers,
malformed bodies, odd strings in paths), against a store with data and writes allowed (so
the change endpoints run their confirmed paths too): no answer is a 5xx, and every
refusal is the API's ``{"error", "message"}``.

The event stream is left out (it streams until the client goes); tests/unit/ui/test_api.py
covers it and its 404s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("schemathesis")

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .test_api import Env, make_store

KNOWN = {"topic": ["orders", "orders.dlq", "users", "blobs"], "group": ["billing", "shipper"]}
EXAMPLES = 40
"""Examples per operation and generation mode (about 15 operations)."""



@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    env = Env(make_store(tmp_path_factory.mktemp("fuzz") / "data"), allow_writes=True)
    yield env
    env.close()


def _pin(drawn: tuple[schemathesis.Case, int]) -> schemathesis.Case:
    case, roll = drawn
    if roll < 7:  # 7 in 10: a name the store has
        for name, values in KNOWN.items():
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = values[roll % len(values)]
        if roll < 5 and isinstance(case.query, dict) and "partition" in case.query:
            case.query["partition"] = roll % 2
    return case


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_no_request_gets_a_server_error(env: Env, mode: GenerationMode) -> None:
    # from the document itself, each operation's strategy driven by hypothesis here
    # (schemathesis's own loader asks as Host "testserver", which the console refuses,
    # and its pytest plugin's from_fixture does not run on pytest 9)
    schema = schemathesis.openapi.from_dict(env.app.openapi())
    schema.app = env.app
    operations = [op.ok() for op in schema.exclude(path_regex=r"/lag/stream$")
                  .get_all_operations()]
    assert len(operations) >= 12
    seen: dict[int, int] = {}

    for operation in operations:
        # most cases name what the store has (else nearly every one is a 404 before the
        # handler's real work): a topic or group it holds, partition 0
        strategy = st.tuples(operation.as_strategy(mode), st.integers(0, 9)).map(_pin)
        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            answer = case.call(headers={"Host": "127.0.0.1"})
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, (case.method, case.formatted_path,
                                              answer.text)
            if answer.status_code >= 400:
                body = answer.json()
                assert set(body) == {"error", "message"}, body
                assert body["message"]

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert sum(seen.values()) >= len(operations) * 5
    if mode is GenerationMode.NEGATIVE:
        assert any(400 <= code < 500 for code in seen)  # the bad input was refused


def test_the_fuzz_reached_the_store(env: Env, tmp_path: Path) -> None:
    """The generated requests ran against this store (not an empty app): it still
    answers, and what they may have changed stayed inside the data directory."""
    assert env.client.get("/api/store").status_code == 200
    assert sorted(p.name for p in env.path.parent.iterdir()) == ["data"]
