"""Reducing what a PO owes by line: how much of each line its open invoice still bills.

One reading for the admin's form (what it offers, and why it refuses) and for the service that
records the request under the PO's row lock. A line's credited quantity counts our reductions by
line on the PO's current invoice that are queued or done, unless their credit note was voided
since. A credit note made by line in Stripe's Dashboard is not counted here: Stripe itself refuses
a note beyond what the line billed, and the request then fails with Stripe's words.

A reduction by line credits quantities only: Stripe credits a line either by quantity or by
amount, never both over its life, and "2 of 5 booth passes" is how organizers count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from invoicing.models import ZERO, PurchaseOrder, PurchaseOrderCredit, StripeWriteRequest
from invoicing.selectors import reduce_amount_refusal

State = StripeWriteRequest.State


@dataclass(frozen=True)
class CreditableLine:
    position: int
    description: str
    quantity: int
    unit_price: Decimal
    credited: int

    @property
    def left(self) -> int:
        return max(0, self.quantity - self.credited)


def credited_quantities(po: PurchaseOrder) -> dict[int, int]:
    """Per PO line (its position), the quantity our reductions credit on the current invoice."""
    rows = list(
        StripeWriteRequest.objects.filter(
            purchase_order=po,
            kind=StripeWriteRequest.Kind.REDUCE,
            stripe_invoice_id=po.stripe_invoice_id,
            state__in=[State.QUEUED, State.SUCCEEDED],
        )
        .exclude(plan=[])
        .values_list("plan", "stripe_credit_note_id")
    )
    voided = set(
        PurchaseOrderCredit.objects.filter(
            stripe_credit_note_id__in=[note for _, note in rows if note],
            voided_at__isnull=False,
        ).values_list("stripe_credit_note_id", flat=True)
    )
    credited: dict[int, int] = {}
    for plan, note in rows:
        if note and note in voided:
            continue
        for item in plan:
            position = int(item["po_line"])
            credited[position] = credited.get(position, 0) + int(item["quantity"])
    return credited


def creditable_lines(po: PurchaseOrder) -> list[CreditableLine]:
    """The PO's priced lines with what is credited of each on its current invoice; none when the
    invoice has tax, which Stripe would credit with a line (see :func:`lines_refusal`)."""
    if po.stripe_invoice_tax:
        return []
    credited = credited_quantities(po)
    return [
        CreditableLine(
            position=line.position,
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            credited=credited.get(line.position, 0),
        )
        for line in po.line_items.all()
        if line.unit_price > 0
    ]


def lines_amount(po: PurchaseOrder, quantities: Mapping[int, int]) -> Decimal:
    """What crediting these quantities takes off the invoice (lines not on the PO count nothing)."""
    prices = {line.position: line.unit_price for line in po.line_items.all()}
    return sum(
        (prices.get(position, ZERO) * quantity for position, quantity in quantities.items()),
        ZERO,
    )


def _line_refusal(line: CreditableLine, quantity: int) -> str:
    if quantity > line.left:
        already = f", {line.credited} credited already" if line.credited else ""
        return (
            f"{line.description}: {quantity} is more than the {line.left} not credited yet "
            f"({line.quantity} on the invoice{already})."
        )
    return ""


def lines_refusal(po: PurchaseOrder, quantities: Mapping[int, int]) -> str:
    """Why the PO's open invoice cannot be credited these quantities per line ("" when it can).

    The PO's state and the person are :func:`~invoicing.selectors.reduce_refusal`'s to judge.
    """
    if po.stripe_invoice_tax:
        return (
            "its invoice includes tax, which a credit by line would credit too; reduce it by an "
            "amount instead."
        )
    if any(quantity < 0 for quantity in quantities.values()):
        return "a quantity to credit cannot be negative."
    asked = {position: quantity for position, quantity in quantities.items() if quantity}
    if not asked:
        return "give the quantity to credit on at least one line."
    lines = {line.position: line for line in creditable_lines(po)}
    for position, quantity in sorted(asked.items()):
        line = lines.get(position)
        if line is None:
            return f"line {position} is not one of its lines with a price."
        if why := _line_refusal(line, quantity):
            return why
    return reduce_amount_refusal(po, lines_amount(po, asked))


def credited_lines_text(row: StripeWriteRequest) -> str:
    """What a reduction by line credits, in plain words ("" for one by amount)."""
    return "; ".join(
        f"{item['description']}: {item['quantity']} of {item['billed']}"
        for item in row.credited_lines
    )
