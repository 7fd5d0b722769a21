"""Where prometheus_client's multiprocess mode keeps each process's values (set up from settings).

Its default names each process's files by pid alone. Containers sharing one metrics volume (compose)
each number their processes from 1, so two of them would write the same file and overwrite each
other's counters; the files here are named by host and pid. This must run before the first metric
is created, which is why settings (loaded before any app) call it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

# "_" separates the parts of prometheus_client's file names; a host name keeps none.
HOST = socket.gethostname().replace("_", "-")


def process_identifier() -> str:
    """Distinct across every process writing to the directory (called again after a fork)."""
    return f"{HOST}-{os.getpid()}"


def write_values_to(directory: str) -> None:
    """Keep this process's counters and histograms in files under directory, named by host and pid."""
    from prometheus_client import values

    Path(directory).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # prometheus_client reads it when it opens a file
    values.ValueClass = values.MultiProcessValue(process_identifier)
