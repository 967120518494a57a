"""What a newcomer notices in the first minutes of `make run`: a tab icon (no 404 for
/favicon.ico), "1 GPU fits" rather than "1 GPUs fit", and the printed demo logins saying what the
README's table says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.utils import translation

from portal.eligibility import describe

ROOT_README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.django_db
def test_the_browser_finds_an_icon_from_the_page_and_at_favicon_ico(client):
    page = client.get("/calls/").content.decode()
    icon = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert icon, "no <link rel=icon> in base.html"
    fallback = client.get("/favicon.ico")
    assert fallback.status_code == 302 and fallback["Location"] == icon.group(1)
    assert finders.find(icon.group(1).removeprefix(settings.STATIC_URL))  # a file collectstatic ships


def test_one_gpu_fits_is_singular_and_two_gpus_fit_is_plural():
    with translation.override("en"):
        assert describe("count_fits", {"count": 1, "per_node": 8}) == "1 GPU fits on one node (8 per node)."
        assert describe("count_fits", {"count": 2, "per_node": 8}) == "2 GPUs fit on one node (8 per node)."
    with translation.override("ko"):
        assert describe("count_fits", {"count": 1, "per_node": 8}) == "GPU 1개는 한 노드에 들어갑니다(노드당 8개)."


@pytest.mark.django_db
def test_the_printed_demo_logins_describe_applicants_as_the_readme_does(capsys):
    call_command("seed_demo")
    out = capsys.readouterr().out
    readme = ROOT_README.read_text()
    for email, org in [("researcher@demo-univ.ac.kr", "Demo National University"),
                       ("founder@demo-startup.kr", "Demo AI Startup")]:  # fmt: skip
        line = next(x for x in out.splitlines() if email in x)
        assert f"owner of {org}" in line and "applicant" not in line
        assert f"owner of {org}" in readme
