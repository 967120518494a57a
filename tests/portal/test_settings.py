"""Production settings: refuse to start without secrets, pass `check --deploy`, send a CSP."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": "k" * 20 + "Q9!x@Z#3vB$7nM%2pL^8rT&5wY*1cE(0" + "s" * 20,
    "ALLOWED_HOSTS": "gpu.example.go.kr",
    "DATABASE_URL": "postgres://portal@db.internal:5432/portal",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "SITE_URL": "https://gpu.example.go.kr",
    "BILLING_SUPPLIER_NAME": "국가AI컴퓨팅센터",
    "BILLING_SUPPLIER_BRN": "220-81-62517",
}


def manage(*args, env):
    dropped = {"PORTAL_ENV", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=base | env, capture_output=True, text=True, cwd=ROOT
    )


def test_check_deploy_passes_in_a_production_like_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "missing",
    ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "SITE_URL", "BILLING_SUPPLIER_NAME", "BILLING_SUPPLIER_BRN"],
)
def test_production_refuses_to_start_without_a_required_setting(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = manage("check", env={**env, missing: ""})
    assert result.returncode != 0
    assert f"{missing} must be set" in result.stderr


@pytest.mark.parametrize("number", ["1234567890", "000-00-00000", "2208162518", "TODO"])
def test_production_refuses_to_issue_invoices_as_a_supplier_without_a_valid_business_number(number):
    result = manage("check", env={**PRODUCTION_ENV, "BILLING_SUPPLIER_BRN": number})
    assert result.returncode != 0
    assert "BILLING_SUPPLIER_BRN must be the centre's business registration number" in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    (tmp_path / "key").write_text(PRODUCTION_ENV["SECRET_KEY"] + "\n")
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"} | {"SECRET_KEY_FILE": str(tmp_path / "key")}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stderr


PAGES = ["/", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/calls/", "/rates/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_pages_send_a_strict_csp_and_contain_no_inline_script_or_style(client, path):
    response = client.get(path)
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    html = response.content.decode()
    inline_scripts = [m for m in re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html) if "application/json" not in m]
    assert inline_scripts == []
    assert not re.search(r"\son[a-z]+\s*=", html)  # no onclick= and the like
    assert not re.search(r"\sstyle\s*=", html)
    assert "<style" not in html
