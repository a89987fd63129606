"""Every refusal of ours is one ``InvoicingError``: permanent for the worker, and no bug."""

from __future__ import annotations

import pytest
import stripe
from django.db import OperationalError

from invoicing import errors, money
from invoicing.retry import has_known_cause, is_transient
from invoicing.services.stripe_client import StripeKeyMissing
from invoicing.services.webhook_endpoints import WebhookRegistrationError

REFUSALS = [
    errors.InvalidPurchaseOrder,
    errors.InvalidTransition,
    errors.InvalidPayment,
    errors.InvoiceAlreadyAttached,
    errors.PurchaseOrderNotInvoiceable,
    errors.InvoiceMismatch,
    errors.EventRejected,
    money.AmountNotRepresentable,
    StripeKeyMissing,
    WebhookRegistrationError,
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda error: error.__name__)
def test_a_refusal_is_an_invoicing_error_the_worker_does_not_retry(
    refusal: type[errors.InvoicingError],
) -> None:
    assert issubclass(refusal, errors.InvoicingError)
    assert issubclass(refusal, ValueError)  # the public interface promises ValueError
    assert not is_transient(refusal("refused"))
    assert has_known_cause(refusal("refused"))


def test_only_failures_without_a_known_cause_are_bugs() -> None:
    assert has_known_cause(
        stripe.IdempotencyError("Keys for idempotent requests can only be used once")
    )
    assert has_known_cause(OperationalError("server closed the connection"))
    assert not has_known_cause(ValueError("an unexpected value"))
    assert not has_known_cause(KeyError("amount"))
