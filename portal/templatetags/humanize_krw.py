from django import template

register = template.Library()


@register.filter
def krw(value: int | None) -> str:
    """Whole won with thousands separators: 3,200,000원 / -330원 (ko), ₩3,200,000 / -₩330 (en):
    the sign before the won sign, as the PDFs print it (billing.templatetags.bilingual.won)."""
    from django.utils.translation import get_language

    if value is None:
        return ""
    number = int(value)
    if not (get_language() or "ko").startswith("ko"):
        return won_sign(number)
    return f"{'-' if number < 0 else ''}{abs(number):,}원"


def won_sign(number: int) -> str:
    """Whole won after the won sign, the minus before it: ₩6,600, -₩330 (English pages, and
    both languages of the stored PDFs)."""
    return f"{'-' if number < 0 else ''}₩{abs(number):,}"
