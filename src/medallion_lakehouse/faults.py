"""Named crash points for fault-injection tests.

`checkpoint("bronze.before_commit")` kills the process with SIGKILL when the environment variable
MEDALLION_FAULT names that point, so tests can prove that a crash anywhere leaves every table at a
readable version and that the next run completes the work. It does nothing otherwise.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "MEDALLION_FAULT"


def checkpoint(name: str) -> None:
    wanted = os.environ.get(ENV_VAR)
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
