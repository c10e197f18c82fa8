"""The compiled record codec (``logstore/records/_codec.c``) for the tests that hold it to
its pure-Python twins: the module, or a skip with the reason when it is not built.

Under ``CI=true`` a codec that is not built fails instead (CI must run the compiled
codec), unless ``LOGSTORE_NO_EXTENSIONS=1`` asks for the pure-Python codec on purpose.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

_why = ""
try:
    import logstore.records._codec as _codec  # noqa: PLR0402 (names the missing module)
except ImportError as err:  # not built: no C compiler when logstore was installed
    _codec = None  # type: ignore[assignment]
    _why = str(err)


def ci_needs_compiled_codec() -> bool:
    """Whether this run must have the compiled codec (CI, not turned off on purpose)."""
    return os.environ.get("CI") == "true" and os.environ.get("LOGSTORE_NO_EXTENSIONS") != "1"


def compiled_codec() -> ModuleType:
    """The compiled codec module; skips (fails under CI) when it is not built."""
    if _codec is not None:
        return _codec
    message = (
        f"the C record codec is not built ({_why}); `pip install -e .` builds it where a "
        f"C compiler is found"
    )
    if ci_needs_compiled_codec():
        pytest.fail(f"{message}: CI must run it (LOGSTORE_NO_EXTENSIONS=1 to run without)")
    pytest.skip(message)
