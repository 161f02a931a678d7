"""Small bar charts drawn on the server as SVG geometry (the end-user page): no script, nothing to fetch, and
readable before any JavaScript runs. The template draws the rectangles; this works out where they go."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

WIDTH, HEIGHT, TOP, BOTTOM = 600, 140, 14, 18


@dataclass(frozen=True)
class BarGeometry:
    x: float
    y: float
    width: float
    height: float
    label: str  # the day and the value, for the bar's tooltip


def _shown(value: float, money: bool) -> str:
    if money:  # small sums keep their digits: an end user's day is often a fraction of a cent
        return f"${value:,.2f}" if value >= 1 else "$" + (f"{value:.7f}".rstrip("0").rstrip(".") or "0")
    return f"{value:,.0f}"


def bars(points: list[tuple[datetime.datetime, float]], *, money: bool = False) -> dict:
    """Geometry for one bar per point in a WIDTH × HEIGHT box, with the peak labelled and the first and last
    day under the axis."""
    peak = max((v for _, v in points), default=0) or 1
    step = WIDTH / max(len(points), 1)
    usable = HEIGHT - TOP - BOTTOM
    drawn = []
    for n, (at, value) in enumerate(points):
        height = value / peak * usable if value else 0
        drawn.append(
            BarGeometry(
                round(n * step + step * 0.1, 2),
                round(TOP + usable - height, 2),
                round(step * 0.8, 2),
                round(height, 2),
                f"{at:%b %d}: {_shown(value, money)}",
            )
        )
    return {
        "bars": drawn,
        "width": WIDTH,
        "height": HEIGHT,
        "axis": HEIGHT - BOTTOM,
        "peak": _shown(max((v for _, v in points), default=0), money),
        "first": f"{points[0][0]:%b %d}" if points else "",
        "last": f"{points[-1][0]:%b %d}" if points else "",
        "total": _shown(sum(v for _, v in points), money),
    }
