"""sudo refuses the agent for a moment during an upgrade (a sudo that read the rule just before
the file was swapped digests the new file against the old rule); refused for good, the agent is
missing. The portal asks once more after a pause before it calls the agent missing (nothing ran
when sudo refused, so asking again does no harm twice)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from allocations import ssh

REFUSED = (1, b"", b"sudo: a password is required\n")
ANSWER = (0, json.dumps({"ok": True, "version": "2.3"}).encode() + b"\n", b"")


def connection(monkeypatch, answers: list) -> tuple[ssh.Connection, list]:
    monkeypatch.setattr(ssh, "SUDO_REFUSAL_PAUSE", 0)
    conn = object.__new__(ssh.Connection)
    conn.target = SimpleNamespace(agent_path="/usr/local/sbin/gpu-portal-agent")
    sent = []

    def exec_(command, stdin, timeout):
        sent.append(command)
        return answers.pop(0)

    conn._exec = exec_
    return conn, sent


def test_a_refusal_during_an_upgrade_is_asked_again_and_answered(monkeypatch):
    conn, sent = connection(monkeypatch, [REFUSED, ANSWER])
    assert conn.agent("version") == {"ok": True, "version": "2.3"}
    assert len(sent) == 2


def test_a_lasting_refusal_is_a_missing_agent_for_good(monkeypatch):
    conn, sent = connection(monkeypatch, [REFUSED, REFUSED])
    with pytest.raises(ssh.SshError) as exc:
        conn.agent("version")
    assert (exc.value.code, exc.value.permanent, len(sent)) == ("agent_missing", True, 2)


def test_an_answer_of_the_agent_is_never_asked_again(monkeypatch):
    failed = (2, json.dumps({"ok": False, "error": "no_such_user", "message": "x"}).encode(), b"")
    conn, sent = connection(monkeypatch, [failed])
    with pytest.raises(ssh.SshError) as exc:
        conn.agent("status", {"usernames": []})
    assert (exc.value.code, len(sent)) == ("no_such_user", 1)
