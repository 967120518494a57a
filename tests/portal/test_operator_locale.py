"""Management commands print in the operator's language, consistently: English unless the
operator's locale says otherwise, the services' messages included (they came out in the portal's
default language, Korean, beside the command's English lines)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from portal.management.operator import operator_language

HOSTNAME_RULE = "A host name has lower-case letters, digits, hyphens and dots."
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({}, "en"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANG": "ko_KR.UTF-8"}, "ko"),
        ({"LANGUAGE": "ko"}, "ko"),
        ({"LANGUAGE": "de:ko:en"}, "ko"),
        ({"LANGUAGE": "en_GB", "LANG": "ko_KR.UTF-8"}, "en"),
        ({"LC_ALL": "POSIX", "LANG": "ko_KR.UTF-8"}, "en"),
        ({"LANG": "fr_FR.UTF-8"}, "en"),
    ],
)
def test_the_operators_locale_picks_the_language_of_commands(environ, language):
    assert operator_language(environ) == language


@pytest.fixture
def bare_locale(monkeypatch):
    for name in LOCALE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def add_bad_node() -> str:
    with pytest.raises(CommandError) as exc:
        call_command("add_node", "Bad_Host", "192.0.2.1", "--gpu-model", "H100-80GB")
    return str(exc.value)


def test_a_commands_service_error_is_in_english_by_default(db, bare_locale):
    assert HOSTNAME_RULE in add_bad_node()


def test_a_korean_operator_gets_it_in_korean(db, bare_locale):
    bare_locale.setenv("LANGUAGE", "ko")
    with translation.override("ko"):
        korean = translation.gettext(HOSTNAME_RULE)
    assert korean != HOSTNAME_RULE
    assert korean in add_bad_node()


# The commands' own lines, not only the services' messages: docs/operations.md promises Korean
# output with LANGUAGE=ko, and they printed English whatever the locale ("Reconciling 1 nodes.").


def run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def one_node(db, monkeypatch):
    """One registered node whose reconcile queues one repair (no SSH: the command's own words)."""
    from allocations.management.commands import reconcile_nodes
    from allocations.models import Node

    Node.objects.create(hostname="gpu-01", address="192.0.2.1", gpu_model="H100-80GB", host_key="ssh-ed25519 AAAA")
    monkeypatch.setattr(reconcile_nodes, "reconcile_node_job", lambda pk: 1)


def test_reconcile_nodes_speaks_english_with_correct_plurals(one_node, bare_locale):
    out = run("reconcile_nodes")
    assert "Reconciling 1 node." in out
    assert "gpu-01: 1 repair queued" in out
    assert "Done in " in out


def test_reconcile_nodes_speaks_korean_to_a_korean_operator(one_node, bare_locale):
    bare_locale.setenv("LANG", "ko_KR.UTF-8")
    out = run("reconcile_nodes")
    assert "노드 1대를 점검합니다." in out
    assert "gpu-01: 복구 작업 1건 대기열에 추가" in out
    assert "만에 완료했습니다." in out
    assert "Reconciling" not in out and "Done in" not in out


def test_outbox_drain_reports_in_the_operators_language(db, bare_locale):
    assert run("outbox_drain").strip() == "Sent: 0. Still unsent: 0."
    bare_locale.setenv("LANGUAGE", "ko")
    assert run("outbox_drain").strip() == "전송: 0건. 아직 전송되지 않음: 0건."


def test_the_demo_logins_and_totp_codes_are_printed_in_korean_for_a_korean_operator(db, bare_locale):
    bare_locale.setenv("LANGUAGE", "ko")
    logins = run("seed_demo")
    assert "데모 환경이 준비되었습니다." in logins and "모든 데모 사용자의 비밀번호" in logins
    assert "데모국립대학교 소유자" in logins and "TOTP 비밀 키:" in logins
    assert "make manage ARGS=demo_totp" in logins  # the command itself stays as typed
    codes = run("demo_totp")
    assert re.search(r"앞으로 \d+초 동안 유효하며", codes)
    bare_locale.setenv("LANGUAGE", "en")
    assert re.search(r"Valid for (1 more second|\d+ more seconds);", run("demo_totp"))


def test_command_errors_are_in_the_operators_language(db, bare_locale):
    bare_locale.setenv("LANGUAGE", "ko")
    with pytest.raises(CommandError, match="--month는 YYYY-MM 형식이어야 합니다"):
        call_command("run_invoicing", "--month", "November")
    with pytest.raises(CommandError, match="GPU 모델 'X-1'이\\(가\\) 없습니다"):
        call_command("add_node", "gpu-02", "192.0.2.2", "--gpu-model", "X-1")
    with pytest.raises(CommandError, match="알 수 없는 노드 gpu-09"):
        call_command("install_agent", "gpu-09", "--operator-key", "/nonexistent")
    bare_locale.setenv("LANGUAGE", "en")
    with pytest.raises(CommandError, match="--month must be YYYY-MM"):
        call_command("run_invoicing", "--month", "November")
