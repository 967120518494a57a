"""What `make run` (and a production process) prints for a refused request and for a crash: a
403 is one line, without the Python traceback every 403 used to print; a 500 keeps its traceback."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client, override_settings
from django.urls import include, path


def refused(request):
    raise PermissionDenied("not yours")


def suspicious(request):
    raise SuspiciousOperation("a forged header")


def crashed(request):
    raise ZeroDivisionError("a bug")


# The portal's own pages too: the 403 and 500 pages link to them.
urlpatterns = [
    path("refused/", refused),
    path("crashed/", crashed),
    path("suspicious/", suspicious),
    path("", include("portal.urls")),
]


@pytest.fixture
def console():
    """What the configured console handler of request errors writes, as the operator sees it."""
    handler = next(h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler)
    written = io.StringIO()
    old = handler.setStream(written)
    yield written
    handler.setStream(old)


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_a_403_is_logged_as_one_line_without_a_traceback(console):
    response = Client(raise_request_exception=False).get("/refused/")
    assert response.status_code == 403
    assert console.getvalue().splitlines() == ["Forbidden (Permission denied): /refused/"]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_a_500_is_still_logged_with_its_traceback(console):
    response = Client(raise_request_exception=False).get("/crashed/")
    assert response.status_code == 500
    out = console.getvalue()
    assert out.startswith("Internal Server Error: /crashed/")
    assert "Traceback (most recent call last)" in out and "ZeroDivisionError: a bug" in out


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_a_400_for_a_suspicious_request_is_one_line_too(console):
    response = Client(raise_request_exception=False).get("/suspicious/")
    assert response.status_code == 400
    assert console.getvalue().splitlines() == ["a forged header"]
