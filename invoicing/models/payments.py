"""The payment ledger of a purchase order (written by ``services/ledger.py`` only)."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from invoicing import money
from invoicing.models.amounts import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS
from invoicing.models.purchase_orders import PurchaseOrder

_STRIPE_OBJECT_KINDS = ["refund", "refund_reversal", "dispute", "dispute_reinstatement"]
# Money Stripe moved off an invoice without refunding it: to the customer's credit balance (an
# overpayment, a credit note's ``credit_amount``) or paid back outside Stripe (``out_of_band``).
_LEFT_KINDS = ["to_credit_balance", "paid_back_off_stripe"]
_LEFT_REVERSALS = ["to_credit_balance_reversal", "paid_back_off_stripe_reversal"]
# Money an organizer paid back to the customer outside Stripe (wire, check, other): keyed by our
# own row (``uid``), never at Stripe.
_REFUND_OFF_STRIPE = "refund_off_stripe"
_OFF_STRIPE_METHODS = ["wire", "check", "other"]
_KINDS = ["payment", *_STRIPE_OBJECT_KINDS, *_LEFT_KINDS, *_LEFT_REVERSALS, _REFUND_OFF_STRIPE]
_MONEY_IN = ["payment", "refund_reversal", "dispute_reinstatement", *_LEFT_REVERSALS]
_MONEY_OUT = ["refund", "dispute", *_LEFT_KINDS, _REFUND_OFF_STRIPE]


class PurchaseOrderPayment(models.Model):
    """One entry of a PO's ledger: money in (payments) or out (refunds, disputes) at Stripe.

    ``payment`` rows of method ``stripe`` are written only by the invoice-snapshot code: each one
    is the growth of what a Stripe invoice collected *on Stripe* (``amount_paid -
    amount_paid_off_stripe``) up to ``stripe_amount_paid_after`` (minor units), so the pair
    ``(stripe_invoice_id, stripe_amount_paid_after)`` identifies it. Money going back is keyed by
    the Stripe object that moved it (``stripe_object_id``: a refund ``re_``/``pyr_`` or a dispute
    ``dp_``), one row per kind, so the ledger is append-only: a failed refund or a won dispute
    adds the opposite entry instead of deleting the first. The sum of a PO's rows is what it has
    received, net.

    Wire, check and other rows are money received outside Stripe. ``applied_invoice_id`` names the
    Stripe invoice whose ``amount_paid_off_stripe`` counts them: staff payments reported there as a
    PaymentRecord (``stripe_payment_record_id``, then ``stripe_attached_at``), and amounts marked
    paid outside Stripe at Stripe itself (``off_stripe_paid_after``, Stripe's figure after them).
    ``credit_balance`` payments are the customer's Stripe credit balance an invoice started from
    (``starting_balance``), one per invoice.

    Money that leaves a PO without a refund is a negative entry naming its invoice in
    ``stripe_invoice_id``, so no amount counts on two POs: ``to_credit_balance`` is what Stripe
    credited to the customer's balance, from an overpaid invoice (keyed by the invoice and its
    ``amount_overpaid`` after the entry, ``overpaid_after``) or a credit note's ``credit_amount``
    (keyed by the credit note, ``stripe_object_id``) or the credit balance a voided invoice had
    applied, which Stripe gives back to the customer (keyed by the invoice, its id also in
    ``stripe_object_id``); ``paid_back_off_stripe`` is a credit note's
    ``out_of_band_amount``. A voided credit note adds the opposite ``*_reversal`` entries.

    ``refund_off_stripe`` is money the conference paid back to the customer outside Stripe (wire,
    check, other), recorded by a finance admin with its reason in ``note``: keyed by our own row
    (``uid``, which the form posts back), never reported to Stripe, and a refund for the status.
    """

    class Kind(models.TextChoices):
        PAYMENT = "payment", "Payment"
        REFUND = "refund", "Refund"
        REFUND_REVERSAL = "refund_reversal", "Refund failed (money back)"
        DISPUTE = "dispute", "Dispute: funds withdrawn"
        DISPUTE_REINSTATEMENT = "dispute_reinstatement", "Dispute won: funds reinstated"
        TO_CREDIT_BALANCE = "to_credit_balance", "Moved to the customer's credit balance (Stripe)"
        TO_CREDIT_BALANCE_REVERSAL = (
            "to_credit_balance_reversal",
            "Credit note voided: credit balance back on the PO",
        )
        PAID_BACK_OFF_STRIPE = "paid_back_off_stripe", "Paid back outside Stripe (credit note)"
        PAID_BACK_OFF_STRIPE_REVERSAL = (
            "paid_back_off_stripe_reversal",
            "Credit note voided: payment back outside Stripe undone",
        )
        REFUND_OFF_STRIPE = _REFUND_OFF_STRIPE, "Paid back outside Stripe"

    class Method(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        WIRE = "wire", "Wire transfer"
        CHECK = "check", "Check"
        OTHER = "other", "Other"
        CREDIT_BALANCE = "credit_balance", "Customer credit balance (Stripe)"

    purchase_order = models.ForeignKey(
        PurchaseOrder, on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS,
        decimal_places=MONEY_DECIMAL_PLACES,
    )
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.PAYMENT)
    method = models.CharField(max_length=16, choices=Method.choices)
    reference = models.CharField(max_length=255, blank=True, default="")
    payment_date = models.DateField()
    note = models.TextField(blank=True, default="")
    stripe_invoice_id = models.CharField(max_length=255, blank=True, default="")
    stripe_amount_paid_after = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The invoice's amount_paid (minor units) after this payment.",
    )
    stripe_object_id = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="The Stripe refund or dispute behind a refund or dispute entry.",
    )
    # Idempotency keys of the Stripe writes reporting this payment: pay-<uid>-<step>. Also what a
    # form posts back, so submitting it twice records one payment.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Not a column: True on the payment ``record_payment`` returns for a form submitted again
    # (the same ``uid``), so the admin says it was already recorded rather than recorded twice.
    repeated_submit: bool = False
    # Moves past a key Stripe poisoned with a 5xx, once Stripe shows the write did not happen.
    key_epoch = models.PositiveIntegerField(default=0)
    applied_invoice_id = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="Off-Stripe and credit-balance entries: the Stripe invoice they count toward.",
    )
    off_stripe_paid_after = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Marked paid outside Stripe at Stripe: the invoice's amount_paid_off_stripe "
        "(minor units) after this entry.",
    )
    overpaid_after = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Moved to the customer's credit balance from an overpaid invoice: the "
        "invoice's amount_overpaid (minor units) after this entry.",
    )
    # A staff payment to report to the PO's invoice at Stripe (now, or once the invoice is sent).
    report_to_stripe = models.BooleanField(default=False)
    stripe_payment_record_id = models.CharField(max_length=255, blank=True, default="")
    stripe_attached_at = models.DateTimeField(null=True, blank=True)
    stripe_report_error = models.TextField(blank=True, default="")
    overpayment_reason = models.TextField(blank=True, default="")
    recorded_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ("recorded_at", "pk")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=("stripe_invoice_id", "stripe_amount_paid_after"),
                condition=Q(kind="payment", method="stripe"),
                name="payment_unique_stripe_snapshot",
            ),
            # One refund / reversal / withdrawal / reinstatement per Stripe object: replays of
            # its events, in any order, can never record it twice.
            models.UniqueConstraint(
                fields=("kind", "stripe_object_id"),
                condition=~Q(kind="payment") & ~Q(stripe_object_id=""),
                name="payment_unique_stripe_object_per_kind",
            ),
            models.CheckConstraint(condition=Q(kind__in=_KINDS), name="payment_kind_valid"),
            # Money in is positive, money out negative; no entry is zero.
            models.CheckConstraint(
                condition=(Q(kind__in=_MONEY_IN) & Q(amount__gt=0))
                | (Q(kind__in=_MONEY_OUT) & Q(amount__lt=0)),
                name="payment_amount_sign_per_kind",
            ),
            models.CheckConstraint(
                condition=Q(method__in=["stripe", "wire", "check", "other", "credit_balance"]),
                name="payment_method_valid",
            ),
            models.UniqueConstraint(
                fields=("applied_invoice_id", "off_stripe_paid_after"),
                condition=Q(off_stripe_paid_after__isnull=False),
                name="payment_unique_off_stripe_snapshot",
            ),
            models.UniqueConstraint(
                fields=("applied_invoice_id",),
                condition=Q(kind="payment", method="credit_balance"),
                name="payment_unique_credit_balance_per_invoice",
            ),
            models.CheckConstraint(
                condition=Q(off_stripe_paid_after__isnull=True)
                | (Q(method="other", off_stripe_paid_after__gt=0) & ~Q(applied_invoice_id="")),
                name="payment_off_stripe_snapshot_fields",
            ),
            models.CheckConstraint(
                condition=~Q(kind="payment", method="credit_balance") | ~Q(applied_invoice_id=""),
                name="payment_credit_balance_names_invoice",
            ),
            models.CheckConstraint(
                condition=~Q(method="stripe")
                | Q(applied_invoice_id="", stripe_payment_record_id="", off_stripe_paid_after=None),
                name="payment_stripe_has_no_off_stripe_fields",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind="payment", method="stripe", stripe_amount_paid_after__gt=0)
                    & ~Q(stripe_invoice_id="")
                    & Q(stripe_object_id="")
                )
                | (
                    Q(kind="payment")
                    & ~Q(method="stripe")
                    & Q(stripe_invoice_id="", stripe_amount_paid_after__isnull=True)
                    & Q(stripe_object_id="")
                )
                | (
                    Q(kind__in=_STRIPE_OBJECT_KINDS)
                    & Q(method="stripe", stripe_amount_paid_after__isnull=True)
                    & ~Q(stripe_object_id="")
                )
                | (
                    Q(kind__in=["to_credit_balance", "to_credit_balance_reversal"])
                    & Q(method="credit_balance")
                    & Q(stripe_amount_paid_after__isnull=True)
                    & ~Q(stripe_invoice_id="")
                )
                | (
                    Q(kind__in=["paid_back_off_stripe", "paid_back_off_stripe_reversal"])
                    & Q(method="other")
                    & Q(stripe_amount_paid_after__isnull=True)
                    & ~Q(stripe_invoice_id="")
                    & ~Q(stripe_object_id="")
                )
                | (
                    Q(kind=_REFUND_OFF_STRIPE, method__in=_OFF_STRIPE_METHODS)
                    & Q(stripe_invoice_id="", stripe_amount_paid_after__isnull=True)
                    & Q(stripe_object_id="")
                ),
                name="payment_stripe_fields_per_kind",
            ),
            # Paid back outside Stripe: never counted against an invoice or reported there, and
            # always with its reason (kept in ``note``).
            models.CheckConstraint(
                condition=~Q(kind=_REFUND_OFF_STRIPE)
                | (
                    Q(applied_invoice_id="", off_stripe_paid_after=None, report_to_stripe=False)
                    & Q(stripe_payment_record_id="", overpayment_reason="")
                    & ~Q(note="")
                ),
                name="payment_refund_off_stripe_fields",
            ),
            # Left the PO: from an overpaid invoice (keyed by Stripe's figure after it) or from
            # a credit note (keyed by its id), never both, never with off-Stripe report fields.
            models.CheckConstraint(
                condition=~Q(kind__in=[*_LEFT_KINDS, *_LEFT_REVERSALS])
                | (
                    Q(applied_invoice_id="", off_stripe_paid_after=None, report_to_stripe=False)
                    & (
                        # (isnull spelled out: a CHECK passes when its condition is NULL)
                        Q(kind="to_credit_balance", stripe_object_id="")
                        & Q(overpaid_after__isnull=False, overpaid_after__gt=0)
                        | (Q(overpaid_after=None) & ~Q(stripe_object_id=""))
                    )
                ),
                name="payment_left_po_fields",
            ),
            models.CheckConstraint(
                condition=Q(overpaid_after=None) | Q(kind="to_credit_balance"),
                name="payment_overpaid_after_only_to_credit_balance",
            ),
            models.UniqueConstraint(
                fields=("stripe_invoice_id", "overpaid_after"),
                condition=Q(overpaid_after__isnull=False),
                name="payment_unique_overpaid_snapshot",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=("stripe_invoice_id",), name="payment_stripe_invoice"),
        ]

    def __str__(self) -> str:
        amount = money.format_display(self.amount, self.purchase_order.currency)
        if self.kind == self.Kind.PAYMENT:
            return f"{amount} by {self.get_method_display()} on {self.payment_date}"
        if self.kind == self.Kind.REFUND_OFF_STRIPE:
            return f"{amount} paid back by {self.get_method_display()} on {self.payment_date}"
        return self.left_po_description() or (
            f"{self.get_kind_display()} {self.stripe_object_id}: {amount}"
        )

    def left_po_description(self) -> str:
        """Money that left the PO without a refund, in the organizer's words ("" otherwise)."""
        shown = money.format_display(abs(self.amount), self.purchase_order.currency)
        source = (
            f"credit note {self.reference or self.stripe_object_id}"
            if self.stripe_object_id and self.stripe_object_id != self.stripe_invoice_id
            else f"invoice {self.stripe_invoice_id}"
        )
        if (
            self.kind == self.Kind.TO_CREDIT_BALANCE
            and self.stripe_object_id == self.stripe_invoice_id
        ):
            return (
                f"{shown} back on the customer's credit balance at Stripe (invoice "
                f"{self.stripe_invoice_id} voided)"
            )
        descriptions = {
            self.Kind.TO_CREDIT_BALANCE: (
                f"{shown} moved to the customer's credit balance at Stripe ({source})"
            ),
            self.Kind.PAID_BACK_OFF_STRIPE: f"{shown} paid back outside Stripe ({source})",
            self.Kind.TO_CREDIT_BALANCE_REVERSAL: (
                f"{shown} back on the PO: {source} was voided, so it is no longer on the "
                "customer's credit balance"
            ),
            self.Kind.PAID_BACK_OFF_STRIPE_REVERSAL: (
                f"{shown} back on the PO: {source} was voided, so it was not paid back"
            ),
        }
        return descriptions.get(self.Kind(self.kind), "")

    def idempotency_key(self, step: str) -> str:
        """Stripe idempotency key of one write reporting this payment (``report``, ``attach``)."""
        suffix = f"-e{self.key_epoch}" if self.key_epoch else ""
        return f"pay-{self.uid}-{step}{suffix}"
