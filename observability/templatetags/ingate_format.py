"""Formatting for the dashboard: money, token counts, durations."""

from decimal import Decimal

from django import template
from django.utils.safestring import mark_safe

register = template.Library()
_UNPRICED = mark_safe('<span class="badge warn" title="No known price for this model: add a price override">unpriced</span>')


@register.filter
def usd(value):
    """$1,234.56 from a dollar up; below, four significant digits ($0.01036, $0.00036); None is an unpriced
    badge, never $0."""
    if value is None:
        return _UNPRICED
    value = Decimal(value)
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    places = max(2, -value.adjusted() + 3)
    return "$" + f"{value:.{places}f}".rstrip("0").rstrip(".")


@register.filter
def tokens(value):
    if value is None:
        return "–"
    value = int(value)
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,}"


@register.filter
def ms(value):
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms" if value >= 10 else f"{value:.2f} ms"


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None
