from django import template

from portal.eligibility import rule_label as _rule_label

register = template.Library()


@register.filter
def rule_label(rule: str) -> str:
    return _rule_label(rule)
