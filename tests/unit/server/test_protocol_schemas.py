"""Every schema in logstore.server.protocol matches Kafka's own JSON message definition,
field by field, for every version the server implements.

Kafka's definitions (``clients/src/main/resources/common/message/*.json``) ship inside
kafka-python 3.x (a test dependency), which builds its own protocol classes from them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from logstore.server.protocol.apis import APIS
from logstore.server.protocol.codec import (
    Array,
    Field,
    Struct,
    WireType,
    in_versions,
    parse_versions,
    snake_case,
)
from logstore.server.protocol.messages import Api


def _kafka_definition(name: str) -> dict[str, Any]:
    # found without importing kafka (its protocol package warns on import)
    spec = importlib.util.find_spec("kafka")
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    text = (package / "protocol" / "schemas" / "resources" / f"{name}.json").read_text()
    return json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))  # type: ignore[no-any-return]


def _type_name(t: WireType) -> str:
    if isinstance(t, Array):
        return "[]" + _type_name(t.item)
    return t.name


def _ours(struct: Struct, version: int) -> list[Any]:
    out: list[Any] = []
    for f in struct.fields:
        if not in_versions(version, f.versions):
            continue
        entry: list[Any] = [f.name, _type_name(f.type), in_versions(version, f.nullable)]
        inner = f.type.item if isinstance(f.type, Array) else f.type
        if isinstance(inner, Struct):
            entry.append(_ours(inner, version))
        out.append(entry)
    return out


def _theirs(fields: list[dict[str, Any]], version: int, common: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for f in fields:
        if "tag" in f or not in_versions(version, parse_versions(f["versions"])):
            continue  # tagged fields exist only in flexible versions
        entry: list[Any] = [
            f["name"], f["type"], in_versions(version, parse_versions(f.get("nullableVersions")))
        ]
        nested = f.get("fields") or common.get(f["type"].removeprefix("[]"))
        if nested is not None:
            entry.append(_theirs(nested, version, common))
        out.append(entry)
    return out


def _cases() -> list[Any]:
    return [
        pytest.param(api, kind, v, id=f"{api.name}{kind}-v{v}")
        for api in APIS.values()
        for kind in ("Request", "Response")
        for v in range(api.min_version, api.max_version + 1)
    ]


@pytest.mark.parametrize(("api", "kind", "version"), _cases())
def test_schema_matches_kafka_definition(api: Api, kind: str, version: int) -> None:
    definition = _kafka_definition(api.name + kind)
    assert definition["apiKey"] == api.key
    flexible = parse_versions(definition["flexibleVersions"])
    assert not in_versions(version, flexible), "only non-flexible versions are implemented"
    common = {c["name"]: c["fields"] for c in definition.get("commonStructs", [])}
    ours = _ours(api.request if kind == "Request" else api.response, version)
    assert ours == _theirs(definition["fields"], version, common)


def test_every_api_is_within_kafka_valid_versions_or_documented() -> None:
    # Kafka 4 dropped some old versions from validVersions (Produce 0-2, ...); the
    # server implements none below Kafka's range except where a client needs it.
    for api in APIS.values():
        low, high = parse_versions(_kafka_definition(api.name + "Request")["validVersions"])
        assert api.max_version <= high
        assert api.min_version >= low or api.name in {"FindCoordinator", "JoinGroup"}, api.name


def test_field_key_is_snake_case() -> None:
    assert snake_case("PartitionIndex") == "partition_index"
    assert snake_case("timeoutMs") == "timeout_ms"
    assert snake_case("GroupsNames") == "groups_names"
    assert Field("ThrottleTimeMs", Struct("X")).key == "throttle_time_ms"
