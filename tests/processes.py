"""Stopping a helper process a test started (a tunnel, an emulator) without letting a slow exit
fail the test that already proved its point."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds; returns its
    exit status. A machine under load can leave an `ssh -N` client, for one, waiting on its
    server's side of the session for longer than a test should care about."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
