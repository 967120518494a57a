"""The one settings file. Everything that differs between environments comes from the environment.

PORTAL_ENV is `production` unless said otherwise: production refuses to start without its
secrets and turns every transport-security setting on. `make run` and `make test` set
`development` / `test`. See `.env.example` for every variable.
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

from portal.validators import brn_is_issued_and_valid, normalise_business_registration_number

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (container secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


PORTAL_ENV = env_str("PORTAL_ENV", "production")
if PORTAL_ENV not in {"production", "development", "test"}:
    raise ImproperlyConfigured(f"PORTAL_ENV must be production, development or test, not {PORTAL_ENV!r}")
PRODUCTION = PORTAL_ENV == "production"


def required(name: str, value: str, dev_default: str) -> str:
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set in production")
    return dev_default


SECRET_KEY = required("SECRET_KEY", env_secret("SECRET_KEY"), "dev-only-insecure-key-" + "x" * 40)
DEBUG = env_bool("DJANGO_DEBUG", False) and not PRODUCTION
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or ([] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# The public address of the portal, for links in e-mails rendered by background jobs.
SITE_URL = required("SITE_URL", env_str("SITE_URL"), "http://127.0.0.1:8000").rstrip("/")

_database_url = env_secret("DATABASE_URL")
if not _database_url:
    raise ImproperlyConfigured(
        "DATABASE_URL must be set (PostgreSQL). `make run` and `make test` start a private cluster and set it."
    )
DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL's JIT compiles any query whose estimated cost passes jit_above_cost: 20-30 ms of
# compilation on admin lists that run in a few ms (issue 13). The portal's queries are short.
if not env_bool("DB_JIT", False):
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = required("REDIS_URL", env_secret("REDIS_URL"), "redis://127.0.0.1:6379/0")


def redis_url_with_timeouts(url: str, *, timeout: float, connect_timeout: float) -> str:
    """`url` with socket timeouts unless it names its own: a Redis that accepts connections and
    never answers (hung, swapping, a half-open network) must not hold a web request, /healthz
    or a /metrics scrape for ever. RQ workers raise the timeout above their blocking dequeue
    themselves (rq's Worker sets socket_timeout to its dequeue timeout + 10 s)."""
    base, _, query_string = url.partition("?")  # not urlunsplit: it turns unix:///x into unix:/x
    query = dict(parse_qsl(query_string))
    query.setdefault("socket_timeout", f"{timeout:g}")
    query.setdefault("socket_connect_timeout", f"{connect_timeout:g}")
    return f"{base}?{urlencode(query)}"


_REDIS_JOBS_URL = redis_url_with_timeouts(
    REDIS_URL,
    timeout=env_float("REDIS_SOCKET_TIMEOUT", 5),
    connect_timeout=env_float("REDIS_CONNECT_TIMEOUT", 2),
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_rq",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "portal",
    "allocations",
    "billing",
]

MIDDLEWARE = [
    "portal.metrics.RequestMetricsMiddleware",  # first: counts and times every response (deploy)
    "django.middleware.security.SecurityMiddleware",
    # Production serves collected static files itself; development uses runserver's.
    *(["whitenoise.middleware.WhiteNoiseMiddleware"] if PRODUCTION else []),
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "portal.uploads.RequestSizeLimitMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "portal.middleware.StaffMfaRequiredMiddleware",
    "portal.middleware.RememberLanguageMiddleware",
]

# Uploads: one PDF of at most 10 MB per form (portal/uploads.py aborts anything larger, before
# it is written anywhere; the proxy's client_max_body_size should say the same).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "portal.uploads.SizeLimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "portal:dashboard"

# django-allauth: e-mail only, mandatory verification, rate limits at their defaults (on).
ACCOUNT_ADAPTER = "portal.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
# Mail subjects start with the portal's name in the recipient's language: portal.adapters.AccountAdapter.
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_PREVENT_ENUMERATION = True
# After 5 failed sign-ins an address is locked this long (the message says so and links to the
# password reset); 10 failures a minute per IP address also lock.
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 5)
ACCOUNT_RATE_LIMITS = {"login_failed": f"10/m/ip,5/{LOGIN_LOCKOUT_MINUTES * 60}s/key"}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env_str("MFA_TOTP_ISSUER", "GPU Portal")
# Staff sessions (admin): end after this long without a request, and this long after login.
STAFF_SESSION_IDLE_MINUTES = env_int("STAFF_SESSION_IDLE_MINUTES", 30)
STAFF_SESSION_MAX_HOURS = env_int("STAFF_SESSION_MAX_HOURS", 12)

LANGUAGE_CODE = "ko"
LANGUAGES = [("ko", _("Korean")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Seoul"
# Times are shown with their zone ("KST"), in the admin too: portal/formats/.
FORMAT_MODULE_PATH = ["portal.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))

# E-mail: the portal renders messages in the request and sends them from a background job.
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "GPU Portal <no-reply@gpu-portal.example.kr>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
_email_backend = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else (
        "portal.devmail.DevMailBackend"
        if PORTAL_ENV == "development"
        else "django.core.mail.backends.console.EmailBackend"
    ),
)
# Development: each message decoded, printed and written to one file in this folder (portal/devmail.py).
DEV_MAIL_DIR = env_str("DEV_MAIL_DIR", str(BASE_DIR / ".devdata" / "mail"))
_smtp_options = {
    "host": env_str("EMAIL_HOST", "localhost"),
    "port": env_int("EMAIL_PORT", 25),
    "username": env_str("EMAIL_HOST_USER"),
    "password": env_secret("EMAIL_HOST_PASSWORD"),
    "use_tls": env_bool("EMAIL_USE_TLS", False),
    "timeout": 20,
}
MAILERS = {
    "default": {
        "BACKEND": _email_backend,
        "OPTIONS": _smtp_options if _email_backend.endswith("smtp.EmailBackend") else {},
    }
}

# E-mails to organisations (who was told about an invoice, a payment, a subsidy) stay in the
# admin this many days after they were sent or skipped; queued ones are never deleted.
MAILING_RETENTION_DAYS = env_int("MAILING_RETENTION_DAYS", 400)

# One Redis for jobs, cache, allauth's rate limits and used-TOTP-code markers: they must be
# shared by every process.
# The cache holds allauth's login and password-reset rate limits and the used-TOTP-code markers:
# security state that must neither vanish nor fail open when Redis stops, and that must not turn
# sign-in into a 500 either. So it lives in PostgreSQL (table created by migration
# portal.0007_cache_table); Redis carries only the job queues.
CACHE_TABLE = "portal_cache"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": CACHE_TABLE,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "portal"),
        # Django's default (300) would cull live lockouts once 300 keys exist; beyond this many,
        # expired entries go first.
        "OPTIONS": {"MAX_ENTRIES": 50_000},
    }
}

# Workers serve the queues in this order (`rqworker default reconcile`: RQ always takes the first
# non-empty queue): `default` for what people wait on (e-mail, provisioning, repairs, invoicing),
# `reconcile` for the periodic per-node reconcile, which queues one job per node every 5 minutes
# (7,500 at 60,000 GPUs) and must never hold up an e-mail or a provisioning run.
RQ_QUEUES = {
    "default": {"URL": _REDIS_JOBS_URL, "DEFAULT_TIMEOUT": 600},
    "reconcile": {"URL": _REDIS_JOBS_URL, "DEFAULT_TIMEOUT": 600},
}
RQ = {"COMMIT_MODE": "on_db_commit"}
# A node the SSH connection took offline is reconciled on one 5-minute run in this many (each try
# may cost a 10 s connect timeout); other nodes on every run (allocations.jobs).
RECONCILE_UNREACHABLE_EVERY = env_int("RECONCILE_UNREACHABLE_EVERY", 6)

# GPU nodes: the portal's SSH key for the provisioning account on every node (ed25519, private),
# the prefix of the unix accounts it creates (the agent refuses any other name), and how long an
# account outlives its grant before the node locks it. (Jupyter listens on unix sockets: no ports.)
PROVISIONING_SSH_KEY = env_str("PROVISIONING_SSH_KEY", str(BASE_DIR / ".devdata" / "provisioning_ed25519"))
NODE_ACCOUNT_PREFIX = env_str("NODE_ACCOUNT_PREFIX", "gp")
ACCOUNT_GRACE_DAYS = env_int("ACCOUNT_GRACE_DAYS", 7)
# uids of node accounts are this number plus a counter that never goes back; the agent accepts
# uids from this number + 1 to NODE_UNIX_ID_MAX only (written into each node's agent config at
# installation). Never lower it once accounts exist; keep the range clear of the nodes' local
# accounts.
NODE_UNIX_ID_BASE = env_int("NODE_UNIX_ID_BASE", 200000)
NODE_UNIX_ID_MAX = env_int("NODE_UNIX_ID_MAX", 2**31 - 2)
PROVISIONING_MAX_ATTEMPTS = env_int("PROVISIONING_MAX_ATTEMPTS", 6)
PROVISIONING_BACKOFF_SECONDS = env_int("PROVISIONING_BACKOFF_SECONDS", 15)

# Metering: GPU samples posted by the nodes (/api/v1/nodes/<hostname>/samples).
# A body above METERING_MAX_BODY_BYTES is refused unread; a batch holds at most so many GPU
# samples; a sample may be at most METERING_CLOCK_SKEW_SECONDS in the future (a node's clock
# runs a little ahead) and no older than the raw retention.
METERING_MAX_BODY_BYTES = env_int("METERING_MAX_BODY_BYTES", 4 * 1024 * 1024)
METERING_MAX_SAMPLES_PER_BATCH = env_int("METERING_MAX_SAMPLES_PER_BATCH", 20000)
METERING_CLOCK_SKEW_SECONDS = env_int("METERING_CLOCK_SKEW_SECONDS", 120)
# Raw samples are kept this many days (whole daily partitions are dropped after that); usage
# hours are kept for good. Partitions are created this many days ahead.
METERING_RETENTION_DAYS = env_int("METERING_RETENTION_DAYS", 30)
METERING_PARTITIONS_AHEAD_DAYS = env_int("METERING_PARTITIONS_AHEAD_DAYS", 3)
# Batch rows (a resent batch counts once) are pruned by the hourly partitions job once a resend
# would be refused as too old (received more than the retention minus 1 hour plus the clock skew
# ago), at most CHUNK rows per DELETE and MAX_CHUNKS DELETEs per run (10.8 M rows a day at
# 60,000 GPUs: 450,000 an hour).
METERING_BATCH_PRUNE_CHUNK = env_int("METERING_BATCH_PRUNE_CHUNK", 10_000)
METERING_BATCH_PRUNE_MAX_CHUNKS = env_int("METERING_BATCH_PRUNE_MAX_CHUNKS", 300)
# Usage hours are rebuilt for this many past hours on every run, so late samples are folded in.
METERING_REBUILD_HOURS = env_int("METERING_REBUILD_HOURS", 6)
# Findings: a grant whose GPUs stay under METERING_IDLE_UTILIZATION % for METERING_IDLE_HOURS
# hours in a row is idle; the weekly list names grants idle more than METERING_IDLE_REPORT_PERCENT
# % of their hours; a node silent for METERING_SILENT_NODE_MINUTES has stopped reporting.
METERING_IDLE_UTILIZATION = env_int("METERING_IDLE_UTILIZATION", 5)
METERING_IDLE_HOURS = env_int("METERING_IDLE_HOURS", 24)
METERING_IDLE_REPORT_PERCENT = env_int("METERING_IDLE_REPORT_PERCENT", 50)
METERING_SILENT_NODE_MINUTES = env_int("METERING_SILENT_NODE_MINUTES", 15)
# Operators' address for metering notices (misuse, silent nodes, the weekly idle list), and who
# else gets the weekly idle list (the ministry reclaims under-used GPUs), comma-separated.
OPERATORS_EMAIL = env_str("OPERATORS_EMAIL", "operators@localhost")
IDLE_REPORT_EMAILS = env_list("IDLE_REPORT_EMAILS")

# Invitations to an organisation are valid this long and can be used once; at most so many a day
# per organisation and per inviter (a spam relay otherwise).
INVITATION_MAX_AGE_DAYS = 7
INVITATIONS_PER_ORGANISATION_PER_DAY = env_int("INVITATIONS_PER_ORGANISATION_PER_DAY", 50)
INVITATIONS_PER_INVITER_PER_DAY = env_int("INVITATIONS_PER_INVITER_PER_DAY", 20)

# Billing (billing/, docs/billing.md). Money is integer KRW; months are Seoul calendar months.
VAT_PERCENT = env_int("VAT_PERCENT", 10)
INVOICE_DUE_DAYS = env_int("INVOICE_DUE_DAYS", 14)
# An invoice unpaid this many days after its due date suspends the organisation's paying grants.
INVOICE_OVERDUE_SUSPEND_DAYS = env_int("INVOICE_OVERDUE_SUSPEND_DAYS", 14)
PAYMENT_RETRY_HOURS = env_int("PAYMENT_RETRY_HOURS", 24)
PAYMENT_MAX_ATTEMPTS = env_int("PAYMENT_MAX_ATTEMPTS", 4)
# A company grant past its subsidy, without a saved card or prepaid hours, keeps running this long.
SUBSIDY_GRACE_HOURS = env_int("SUBSIDY_GRACE_HOURS", 72)
# The supplier printed on invoices (the centre: Korean and English name) and its business
# registration number. Production requires the name and a number with a valid check digit: an
# invoice never goes out with an empty or placeholder supplier (the development defaults are
# a sample, never a buyer of the demo world).
BILLING_SUPPLIER_NAME = required("BILLING_SUPPLIER_NAME", env_str("BILLING_SUPPLIER_NAME").strip(), "국가AI컴퓨팅센터")
BILLING_SUPPLIER_NAME_EN = env_str("BILLING_SUPPLIER_NAME_EN", "National AI Computing Centre")
BILLING_SUPPLIER_BRN = normalise_business_registration_number(
    required("BILLING_SUPPLIER_BRN", env_str("BILLING_SUPPLIER_BRN").strip(), "1208147521")
)
if PRODUCTION and not brn_is_issued_and_valid(BILLING_SUPPLIER_BRN):
    raise ImproperlyConfigured(
        "BILLING_SUPPLIER_BRN must be the centre's business registration number (10 digits, valid check digit)"
    )
# The centre's bank account for invoices not collectable by card (printed on them and the page).
BILLING_BANK_ACCOUNT = env_str("BILLING_BANK_ACCOUNT", "")
# Stripe: the secret API key, the webhook signing secret, and (tests, emulators) another API base.
STRIPE_SECRET_KEY = env_secret("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_secret("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env_str("STRIPE_API_BASE")
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
# Creating a Checkout session happens while the user waits: at most this long, then an error page.
STRIPE_CHECKOUT_TIMEOUT_SECONDS = env_int("STRIPE_CHECKOUT_TIMEOUT_SECONDS", 10)
# The smallest amount charged by card. Stripe's API reference: "The minimum amount is $0.50 US or
# equivalent in charge currency" (https://docs.stripe.com/currencies, minimum charge amounts);
# KRW has no row of its own, and the check is made after conversion to the settlement currency,
# so ₩1,000 (USD 0.50 is about ₩700-750 in 2026) leaves room for the exchange rate. A month below
# it is carried forward to the next invoice (docs/billing.md).
STRIPE_MIN_CHARGE_KRW = env_int("STRIPE_MIN_CHARGE_KRW", 1000)
# Production takes money: a test-mode key (sk_test_…, rk_test_…) is refused unless this says so
# (a staging deployment run in production mode).
STRIPE_ALLOW_TEST_KEY = env_bool("STRIPE_ALLOW_TEST_KEY", False)
if PRODUCTION and STRIPE_SECRET_KEY.startswith(("sk_test_", "rk_test_")) and not STRIPE_ALLOW_TEST_KEY:
    raise ImproperlyConfigured(
        "STRIPE_SECRET_KEY is a test-mode key in production; use a live key or set STRIPE_ALLOW_TEST_KEY=1"
    )

# Public webmail domains nobody can claim for an organisation: a built-in list
# (portal/services/domains.py) plus these, comma-separated.
PUBLIC_EMAIL_DOMAINS_EXTRA = env_list("PUBLIC_EMAIL_DOMAINS_EXTRA")

# Security: CSP without inline scripts or styles; transport security in production.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The same policy as the nginx site's `add_header Strict-Transport-Security` (which is what
    # browsers get: nginx hides this header and sends its own on every response); kept equal for
    # `check --deploy` and for sites behind another proxy (tests/deploy/test_hsts.py). Preload is
    # off: a commitment slow to undo, opted into in both places (docs/deployment.md, HSTS).
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 63072000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    # Without preload `check --deploy` warns (W021); leaving preload off is this decision, not an
    # oversight, so that one warning is silenced only while preload is off.
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Production deployment (deploy/, docs/deployment.md) -------------------------------------------
# The portal runs behind nginx on the same host (gunicorn listens on a unix socket only nginx can
# open). nginx appends the client's address to X-Forwarded-For; the portal trusts exactly this
# many proxies from the right of that header (allauth's per-IP rate limits need the real client
# address). 0: use the connection's address (development, tests).
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# Prometheus (/metrics, portal/metrics.py): a scrape needs `Authorization: Bearer METRICS_TOKEN`
# and, when METRICS_ALLOWED_NETWORKS is set, a client address inside one of those networks
# (comma-separated CIDRs). With neither set /metrics answers 404.
METRICS_TOKEN = env_secret("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # A refused request (403, 400) is one line; a 500 keeps its traceback (portal/logs.py).
    "filters": {"client_errors_on_one_line": {"()": "portal.logs.ClientErrorsOnOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["client_errors_on_one_line"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # paramiko logs every connection at INFO ("Connected (version 2.0 …)"): only its warnings.
        # weasyprint logs every rendering step of every invoice PDF at INFO.
        "paramiko": {"level": "WARNING"},
        "weasyprint": {"level": "WARNING"},
        # Request errors go to the console handler above only: through "django" they were
        # printed a second time, traceback and all, by Django's own (DEBUG) console handler.
        "django.request": {"handlers": ["console"], "propagate": False},
        "django.security": {"handlers": ["console"], "propagate": False},
    },
}

# Demo world (never in production): the shared password of every demo user.
DEMO_PASSWORD = env_str("DEMO_PASSWORD", "portal-demo-2026")
