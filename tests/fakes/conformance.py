"""Static proof that :class:`MemoryBackend` conforms to the Backend Protocol: mypy checks
this assignment structurally (every method, every signature)::

    mypy --strict --explicit-package-bases tests/fakes

(``--explicit-package-bases``: ``tests/`` has no ``__init__.py``, so mypy would otherwise
see the module under two names. Add ``--follow-imports=silent`` to check only
``tests/fakes`` while ``logstore/`` itself does not type-check.) Importing this module at
run time checks nothing more.
"""

from __future__ import annotations

from logstore.client.backend import Backend
from tests.fakes.memory_backend import MemoryBackend

backend: Backend = MemoryBackend()
