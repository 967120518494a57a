from django import template

register = template.Library()


@register.filter
def krw(value: int | None) -> str:
    """Whole won with thousands separators: 3,200,000원 (ko) / ₩3,200,000 (en)."""
    from django.utils.translation import get_language

    if value is None:
        return ""
    amount = f"{int(value):,}"
    return f"{amount}원" if (get_language() or "ko").startswith("ko") else f"₩{amount}"
