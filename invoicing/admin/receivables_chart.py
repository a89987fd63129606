"""The receivables chart: collected and outstanding at each month's end, as server-made SVG.

No script and no library: the page works offline and prints. Accessible by construction: the
SVG is an ``img`` with a title and a description that states the latest figures, every bar has
its own title (the figures of its month), and the page repeats the figures in a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from invoicing import money
from invoicing.selectors_overview import ChartPoint

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 96, 16, 16, 44
COLLECTED_COLOUR, OUTSTANDING_COLOUR = "#2e7d32", "#b35900"


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest 1, 2 or 5 x 10^n at or above ``value`` (the axis' top)."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, 5, 10):
        candidate = Decimal(step).scaleb(exponent)
        if candidate >= value:
            return candidate
    return Decimal(10).scaleb(exponent)  # pragma: no cover (the loop ends at 10)


def _n(value: float) -> str:
    """A coordinate (format_html escapes its arguments, so numbers go in as text)."""
    return f"{value:.1f}"


def _month_label(point: ChartPoint) -> str:
    return point.month.strftime("%b %Y")


def render(points: Sequence[ChartPoint], *, currency: str, title_id: str) -> SafeString:
    """The chart for one currency; ``title_id`` makes its title/description ids unique."""
    top = _nice_ceiling(max((p.collected + p.outstanding for p in points), default=Decimal(0)))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(points), 1)
    bar = slot * 0.62

    def y(value: Decimal) -> float:
        return TOP + plot_height - float(value / top) * plot_height

    def amount(value: Decimal) -> str:
        return money.format_display(value, currency)

    ticks = [top * Decimal(i) / 4 for i in range(5)]
    grid = format_html_join(
        "",
        '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>'
        '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="#444">{}</text>',
        (
            (
                LEFT,
                WIDTH - RIGHT,
                _n(y(t)),
                _n(y(t)),
                LEFT - 6,
                _n(y(t) + 4),
                money.plain_amount(t, currency),
            )
            for t in ticks
        ),
    )
    bars = format_html_join(
        "",
        "<g><title>{}: collected {}, outstanding {}</title>"
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
        '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#444">{}</text></g>',
        (
            (
                _month_label(p),
                amount(p.collected),
                amount(p.outstanding),
                _n(LEFT + i * slot + (slot - bar) / 2),
                _n(y(p.collected)),
                _n(bar),
                _n(y(Decimal(0)) - y(p.collected)),
                COLLECTED_COLOUR,
                _n(LEFT + i * slot + (slot - bar) / 2),
                _n(y(p.collected + p.outstanding)),
                _n(bar),
                _n(y(p.collected) - y(p.collected + p.outstanding)),
                OUTSTANDING_COLOUR,
                _n(LEFT + i * slot + slot / 2),
                HEIGHT - BOTTOM + 16,
                p.month.strftime("%b %y"),
            )
            for i, p in enumerate(points)
        ),
    )
    latest = points[-1] if points else None
    description = (
        f"Month-end figures from {_month_label(points[0])} to {_month_label(latest)}. "
        f"Now: collected {amount(latest.collected)}, outstanding {amount(latest.outstanding)}."
        if latest is not None
        else "No invoices yet."
    )
    legend = format_html(
        '<rect x="{}" y="{}" width="12" height="12" fill="{}"/>'
        '<text x="{}" y="{}" font-size="12">Collected to date</text>'
        '<rect x="{}" y="{}" width="12" height="12" fill="{}"/>'
        '<text x="{}" y="{}" font-size="12">Outstanding</text>',
        LEFT,
        HEIGHT - 18,
        COLLECTED_COLOUR,
        LEFT + 18,
        HEIGHT - 8,
        LEFT + 160,
        HEIGHT - 18,
        OUTSTANDING_COLOUR,
        LEFT + 178,
        HEIGHT - 8,
    )
    return format_html(
        '<svg class="receivables-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        'viewBox="0 0 {} {}" width="100%" style="max-width:{}px;height:auto" '
        'aria-labelledby="{}-title {}-desc" font-family="sans-serif">'
        '<title id="{}-title">Collected and outstanding, {}, at each month\'s end</title>'
        '<desc id="{}-desc">{}</desc>{}{}{}</svg>',
        WIDTH,
        HEIGHT,
        WIDTH,
        title_id,
        title_id,
        title_id,
        currency.upper(),
        title_id,
        description,
        grid,
        bars,
        legend,
    )
