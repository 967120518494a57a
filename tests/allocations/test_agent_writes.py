"""What the agent writes is whole or not written, and what stops a write is named so the portal
knows whether another try can help: a full disk may be freed (disk_full, retried), a caller's
file-size limit or other limits stay until an operator changes them (permanent)."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from allocations import ssh
from allocations.agent.gpu_portal_agent import cli
from allocations.agent.gpu_portal_agent.common import write_all

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "allocations/agent/gpu_portal_agent"


def test_no_module_of_the_agent_writes_a_file_in_place():
    """The Jupyter state file was opened with "w" and dumped into: under a file-size limit it
    was left as `{"pid": 18013, "`. Every file the agent writes goes through replace_file
    (a temporary file, written in full, then renamed)."""
    in_place = re.compile(r"""open\([^)]*,\s*["'][wa]""")
    found = [
        f"{path.name}:{number}"
        for path in sorted(AGENT.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if in_place.search(line)
    ]
    assert found == []


def test_a_file_size_limit_leaves_an_agent_record_as_it_was(tmp_path):
    """A limit the agent could not lift (a hard one, here set in the child itself) stops the
    write: the record keeps its old content and no temporary file is left."""
    record = tmp_path / "jupyter-gp1.s.json"
    record.write_text('{"pid": 1}')
    code = (
        "import resource, sys; sys.path.insert(0, sys.argv[1]);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16));"
        "from allocations.agent.gpu_portal_agent.common import replace_json;"
        "replace_json(sys.argv[2], {'pid': 18013, 'socket': 'x' * 100})"
    )
    result = subprocess.run([sys.executable, "-c", code, str(ROOT), str(record)], capture_output=True, text=True)
    assert result.returncode != 0 and "File too large" in result.stderr, result.stderr
    assert record.read_text() == '{"pid": 1}'
    assert [p.name for p in tmp_path.iterdir()] == [record.name]


def run_main(monkeypatch, capsys, verb) -> dict:
    monkeypatch.setitem(cli.VERBS, "version", verb)
    monkeypatch.setattr(cli, "load_config", dict)
    monkeypatch.setattr(sys, "stdin", io.StringIO("{}"))
    try:
        assert cli.main(["agent", "version"]) == 2
    finally:
        signal.alarm(0)
    return json.loads(capsys.readouterr().out)


def test_a_full_disk_is_not_answered_as_a_file_too_large(monkeypatch, capsys):
    """ENOSPC was answered file_too_large, a permanent failure: a grant's tasks failed for good
    on a disk that an operator then freed. It is disk_full now, and the portal retries it."""

    def fill(data, config):
        fd = os.open("/dev/full", os.O_WRONLY)
        try:
            write_all(fd, b"x" * 100)
        finally:
            os.close(fd)

    answer = run_main(monkeypatch, capsys, fill)
    assert answer["error"] == "disk_full", answer

    def too_large(data, config):
        raise OSError(errno.EFBIG, "File too large")

    assert run_main(monkeypatch, capsys, too_large)["error"] == "file_too_large"


@pytest.mark.parametrize(
    ("code", "permanent"), [("disk_full", False), ("file_too_large", True), ("caller_limits", True)]
)
def test_the_portal_retries_a_full_disk_but_not_a_callers_limit(code, permanent):
    answer = json.dumps({"ok": False, "error": code, "message": "m"}).encode()
    with pytest.raises(ssh.SshError) as exc:
        ssh._agent_answer("set-gpus", 2, answer, b"")
    assert exc.value.code == code and exc.value.permanent is permanent
