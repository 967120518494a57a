"""Validators shared by forms, models and eligibility rules (pure functions)."""

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Bounds every numeric field of calls, applications and awards keeps (validators and database
# checks): far above any real request, far below what PostgreSQL's integer (2^31 - 1) holds.
MAX_GPU_HOURS = 100_000_000
MAX_CALL_BUDGET_GPU_HOURS = 1_000_000_000
MAX_GPUS = 64
MAX_STARTUP_AGE_YEARS = 100

BRN_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def normalise_business_registration_number(value: str) -> str:
    """'123-45-67890' and ' 1234567890 ' both become '1234567890'; other characters stay and fail."""
    return re.sub(r"[\s-]", "", value or "")


def business_registration_number_is_valid(value: str) -> bool:
    """The Korean business registration number (사업자등록번호) check digit.

    Weights 1,3,7,1,3,7,1,3,5 over the first nine digits, plus the tens digit of
    digit9 * 5; the tenth digit is (10 - sum mod 10) mod 10.
    """
    if not re.fullmatch(r"[0-9]{10}", value or ""):
        return False
    digits = [int(c) for c in value]
    total = sum(d * w for d, w in zip(digits, BRN_WEIGHTS, strict=False))
    total += (digits[8] * 5) // 10
    return (10 - total % 10) % 10 == digits[9]


def validate_business_registration_number(value: str) -> None:
    if not re.fullmatch(r"[0-9]{10}", value or ""):
        raise ValidationError(_("A business registration number has 10 digits, like 123-45-67890."), code="format")
    # 000-xx-xxxxx (no tax office) and xxx-00-xxxxx (no type code) are never issued, though
    # some pass the check digit (0000000000 does).
    if value[:3] == "000" or value[3:5] == "00":
        raise ValidationError(
            _("This is not an issued business registration number (its office or type code is 0)."), code="unissued"
        )
    if not business_registration_number_is_valid(value):
        raise ValidationError(
            _("This business registration number is not valid (its check digit does not match)."),
            code="checksum",
        )


def brn_is_issued_and_valid(value: str) -> bool:
    """What `validate_business_registration_number` accepts, as a boolean (settings checks)."""
    try:
        validate_business_registration_number(value)
    except ValidationError:
        return False
    return True


def normalise_domain(value: str) -> str:
    return (value or "").strip().lower().lstrip("@").rstrip(".")


def validate_domain(value: str) -> None:
    if not DOMAIN_RE.fullmatch(value or ""):
        raise ValidationError(
            _("“%(domain)s” is not an e-mail domain like example.ac.kr."), code="domain", params={"domain": value}
        )


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower() if "@" in (email or "") else ""


# A web or e-mail address as mail clients find one: a scheme, "www.", "@", a name followed by a
# dot and a top-level domain (ASCII, internationalised like .한국, or punycode xn--…), or a bare
# IPv4 address. Match it on text_for_link_check(value): full-width and ideographic dots count.
LINK_RE = re.compile(
    r"(://|www\.|@|\b\d{1,3}(?:\.\d{1,3}){3}\b|[\w-]+\.(?:xn--[a-z0-9-]{1,59}|[^\W\d_]{2,24})(?![^\W\d_]))",
    re.IGNORECASE,
)
_DOTS = str.maketrans({"。": ".", "｡": ".", "．": ".", "︒": ".", "﹒": "."})


def text_for_link_check(value: str) -> str:
    """NFKC (full-width letters and dots become ASCII) and every dot-like character a dot."""
    return unicodedata.normalize("NFKC", value or "").translate(_DOTS)


def validate_no_link(value: str) -> None:
    """Names that appear in e-mails to strangers (invitations) must not carry a link or address."""
    if LINK_RE.search(text_for_link_check(value)):
        raise ValidationError(_("A name cannot contain a web address or an e-mail address."), code="link")
