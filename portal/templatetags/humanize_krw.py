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
    amount = f"{abs(number):,}"
    sign = "-" if number < 0 else ""
    return f"{sign}{amount}원" if (get_language() or "ko").startswith("ko") else f"{sign}₩{amount}"
