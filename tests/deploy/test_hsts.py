"""One HSTS policy: nginx sends it on every response (pages, static files, its own error pages)
and hides the portal's; the portal's settings must say the same, for `check --deploy` and for a
site behind another proxy. Preload is a commitment that is slow to undo (every subdomain HTTPS
for good; leaving the browsers' list takes months), so it is off in both until a site opts in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The header Django's SecurityMiddleware adds to an HTTPS response, under production settings.
PROBE = """
import django
django.setup()
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.test import RequestFactory
response = SecurityMiddleware(lambda r: HttpResponse())(RequestFactory().get("/", secure=True))
print(response.headers.get("Strict-Transport-Security", ""))
"""


def nginx_hsts() -> set[str]:
    site = (ROOT / "deploy/nginx/gpu-portal.conf").read_text()
    return set(re.findall(r'^\s*add_header Strict-Transport-Security "([^"]+)" always;', site, re.M))


def portal_hsts(extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "PORTAL_ENV", "DJANGO_"))}
    env |= {
        "PORTAL_ENV": "production",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "gpu.example.go.kr",
        "DATABASE_URL": "postgres://portal@db.internal/portal",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "SITE_URL": "https://gpu.example.go.kr",
        "BILLING_SUPPLIER_NAME": "국가AI컴퓨팅센터",
        "BILLING_SUPPLIER_BRN": "2208162517",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        **extra,
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip()


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^SECURE_HSTS_[A-Z_]+=", line))


def test_nginx_and_the_portal_send_the_same_hsts_policy_without_preload_by_default():
    """nginx hid the portal's header and sent its own without `preload` while the portal's
    SECURE_HSTS_PRELOAD defaulted on: the setting promised a preload that never reached a browser."""
    (header,) = nginx_hsts()  # one policy, wherever nginx adds it
    assert "preload" not in header
    assert portal_hsts({}) == header  # the settings' defaults
    assert portal_hsts(env_example()) == header  # what operators copy


def test_the_nginx_site_hides_the_portals_header_so_each_response_has_exactly_one():
    site = (ROOT / "deploy/nginx/gpu-portal.conf").read_text()
    assert "proxy_hide_header Strict-Transport-Security;" in site
