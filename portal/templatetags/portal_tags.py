from django import template

from portal.eligibility import rule_label as _rule_label

register = template.Library()


@register.filter
def rule_label(rule: str) -> str:
    return _rule_label(rule)


@register.filter
def nolinks(value: object) -> str:
    """Defang anything link-like (a web or e-mail address) so mail clients do not turn it into a
    link: names in e-mails to strangers are text, never a vehicle for phishing links."""
    from portal.validators import LINK_RE, text_for_link_check

    def defang(match) -> str:
        return match.group(0).replace("://", "[:]//").replace(".", "[.]").replace("@", "[at]")

    return LINK_RE.sub(defang, text_for_link_check(str(value)))


@register.filter
def locked_out(form) -> bool:
    """Whether a sign-in form failed because of the failed-attempts lockout."""
    from django.forms.forms import NON_FIELD_ERRORS

    return bool(form) and form.has_error(NON_FIELD_ERRORS, "too_many_login_attempts")
