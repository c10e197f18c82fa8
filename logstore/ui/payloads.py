"""How the console shows a record: each key, value and header value as JSON, text or
binary (hex), cut to a bound; and the filters of the record browser.

Every bound here is what keeps one answer small whatever the store holds: a value is cut
at :data:`TEXT_LIMIT` characters of text or :data:`HEX_LIMIT` bytes of hex, a record shows
at most :data:`MAX_HEADERS` headers, and JSON is parsed only when it is small, shallow and
strict enough to be sent back as JSON (no NaN, no lone surrogates).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from logstore.types import ConsumerRecord

TEXT_LIMIT = 64 * 1024
"""Characters of a key, value or header shown as text (the rest is cut)."""
HEX_LIMIT = 4 * 1024
"""Bytes of a binary key, value or header shown as hex."""
MAX_HEADERS = 100
"""Headers shown per record (``headers_total`` says how many it has)."""
MAX_JSON_DEPTH = 64
"""Deeper JSON is shown as text (it is still the record's own text)."""


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: JSON has no infinity to send back
        raise ValueError(f"{text} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
"""Control characters other than tab, newline and carriage return: binary."""


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _parse_json(text: str) -> tuple[bool, Any]:
    """``(True, value)`` if ``text`` is strict JSON that can be sent back as JSON (the
    costly checks only where they can fail: nesting where there are many brackets, a
    lone surrogate where there are escapes)."""
    try:
        value = _DECODER.decode(text)
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
            return False, None
        if "\\u" in text:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        return False, None
    return True, value


def payload(data: bytes | None) -> dict[str, Any] | None:
    """How a key, value or header value is shown: JSON (parsed), UTF-8 text, or binary
    (hex); None stays None."""
    if data is None:
        return None
    size = len(data)
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _CONTROL.search(text):
        text = None  # control characters: binary that happens to decode
    if text is None:
        shown = data[:HEX_LIMIT]
        return {"size": size, "encoding": "binary", "text": None, "hex": shown.hex(),
                "truncated": size > len(shown)}
    out: dict[str, Any] = {"size": size, "encoding": "text", "text": text[:TEXT_LIMIT],
                           "hex": None, "truncated": len(text) > TEXT_LIMIT}
    if len(text) <= TEXT_LIMIT and text.lstrip()[:1] in ("{", "["):
        ok, value = _parse_json(text)
        if ok:
            out["json"] = value
            out["encoding"] = "json"
    return out


def record_json(record: ConsumerRecord) -> dict[str, Any]:
    """A record as the API answers it."""
    return {
        "offset": record.offset, "timestamp": record.timestamp,
        "key": payload(record.key), "value": payload(record.value),
        "headers": [{"key": k, "value": payload(v)} for k, v in record.headers[:MAX_HEADERS]],
        "headers_total": len(record.headers),
    }


def shown_size(record: dict[str, Any]) -> int:
    """About how many characters ``record`` (:func:`record_json`'s) takes in an answer."""
    parts = [record["key"], record["value"], *(h["value"] for h in record["headers"])]
    return 200 + sum(
        len(p["text"] or p["hex"] or "") * (2 if p["encoding"] == "json" else 1)
        for p in parts if p is not None
    ) + sum(len(h["key"]) + 64 for h in record["headers"])


def text_of(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True)
class RecordFilter:
    """Substrings a record must hold: in its key, its value, and a header (``NAME`` or
    ``NAME=TEXT``) — all that are given."""

    key: str | None = None
    value: str | None = None
    header: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.key or self.value or self.header)

    def matches(self, record: ConsumerRecord) -> bool:
        if self.key and self.key not in text_of(record.key):
            return False
        if self.value and self.value not in text_of(record.value):
            return False
        if self.header:
            name, sep, wanted = self.header.partition("=")
            return any(k == name and (not sep or wanted in text_of(v))
                       for k, v in record.headers)
        return True


NO_FILTER = RecordFilter()
"""Every record."""
