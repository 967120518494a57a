"""Management commands print in the operator's language, consistently: English unless the
operator's locale says otherwise, the services' messages included (they came out in the portal's
default language, Korean, beside the command's English lines)."""

from __future__ import annotations

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
