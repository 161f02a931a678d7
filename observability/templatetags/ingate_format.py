"""Formatting for the dashboard: money, token counts, durations."""

from decimal import Decimal

from django import template
from django.utils.html import format_html

from observability.models import RequestRecord

register = template.Library()


def _dash(title: str):
    return format_html('<span class="nocost" title="{}">—</span>', title)


def _unpriced(title: str):
    return format_html('<span class="badge warn" data-cost="unpriced" title="{}">unpriced</span>', title)


@register.filter
def usd(value):
    """$1,234.56 from a dollar up; below, four significant digits ($0.01036, $0.00036); None (no amount) is a
    dash, never $0. Whether a missing cost means "unpriced" or "failed" is the `cost` filter's to say."""
    if value is None:
        return _dash("No amount")
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


@register.filter
def cost(item):
    """The cost of a record, or of a sum of records (a mapping or object with cost, requests, errors, unpriced
    and priced counts), as every page shows it. Unpriced (models.UNPRICED) is a badge, never $0; a failed
    request, or one of a kind not billed by the token, has no cost: a dash that says why."""
    if isinstance(item, RequestRecord):
        if item.cost_total is not None:
            return usd(item.cost_total)
        if item.unpriced:
            if item.usage_source == "reported":
                return _unpriced("No known price for this model: add a price override")
            return _unpriced("The provider reported no usage to price")
        if item.failed:
            return _dash(f"Failed ({item.get_outcome_display().lower()}): nothing billed was reported")
        return _dash("Not billed by the token")
    read = item.get if hasattr(item, "get") else lambda name: getattr(item, name, None)
    requests, errors = read("requests") or read("items") or 0, read("errors") or 0  # items: an eval target's
    unpriced, priced = read("unpriced") or 0, read("priced") or 0
    if unpriced and not priced:
        return _unpriced(f"{unpriced} request{'s' if unpriced != 1 else ''} with no known price")
    if unpriced:
        return format_html(
            '{} <span class="badge warn" data-cost="partly-unpriced" title="Not included: {} request{} with no known '
            'price">+{} unpriced</span>',
            usd(read("cost") or 0),
            unpriced,
            "s" if unpriced != 1 else "",
            unpriced,
        )
    if priced or not requests:
        return usd(read("cost") or 0)
    if errors == requests:
        return _dash("Every request failed: nothing billed" if requests > 1 else "The request failed: nothing billed")
    if errors:
        return _dash(f"No cost: {errors} failed, the rest are not billed by the token")
    return _dash("Not billed by the token")


@register.filter
def field(form, name):
    """A form's bound field by name (`form|field:"search"`), for templates that lay fields out by a list."""
    return form[name]
