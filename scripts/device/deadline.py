"""What the lent-GPU scripts share: wait for a training process until the script's deadline, else stop it."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_or_kill(p: subprocess.Popen, deadline: float, name: str, log: Callable[[str], None]) -> int:
    """Wait for ``p`` until ``deadline`` (``time.time()`` seconds; at least 1 s); kill it there, saying so.
    Returns its exit code."""
    try:
        p.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        log(f"{name}: stopped at the deadline")
    return p.returncode
