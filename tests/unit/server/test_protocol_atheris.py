"""Coverage-guided fuzzing of the request decoder with atheris (marker ``soak``: CI does
not select it). Install with ``pip install -e '.[fuzz]'``; run with
``pytest -m soak tests/unit/server/test_protocol_atheris.py`` (``FUZZ_RUNS`` sets the
number of inputs, default 200,000).

The fuzzer runs in a child process (atheris takes over the process and exits it); the
target decodes a whole request frame the way a connection does (header, then the body of
that API and version) and fails on anything but a value or MalformedRequestError.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.soak

TARGET = textwrap.dedent(
    """
    import sys
    import atheris

    with atheris.instrument_imports():
        from logstore.server.protocol.apis import APIS, parse_header
        from logstore.server.protocol.codec import MalformedRequestError

    def one(data: bytes) -> None:
        try:
            header = parse_header(data)
            api = APIS.get(header.api_key)
            if api is not None and api.supports(header.api_version):
                api.request.decode(data, header.api_version, header.body_at)
        except MalformedRequestError:
            pass

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
    """
)


def test_atheris_finds_nothing_in_the_request_decoder(tmp_path: object) -> None:
    pytest.importorskip("atheris")
    runs = os.environ.get("FUZZ_RUNS", "200000")
    script = os.path.join(str(tmp_path), "fuzz_target.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(TARGET)
    done = subprocess.run(
        [sys.executable, script, f"-runs={runs}", "-max_len=512", "-timeout=5"],
        capture_output=True, text=True, timeout=3600, check=False,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-4000:]
