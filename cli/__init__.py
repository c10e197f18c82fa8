"""The ``logstore`` command line (installed as the ``logstore_cli`` package)."""
