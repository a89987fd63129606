"""Many clients from many threads, as the Celery worker runs them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import stripe

from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle


def test_concurrent_invoice_creation_keeps_numbers_unique(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, customer: stripe.Customer
) -> None:
    # 40 invoices from 8 threads: past the sandbox's 25 requests/s, which is not the point here.
    stripe_emulator.configure(stripe_secret_key, rate_limit=None)

    def make(index: int) -> str:
        client = stripe_emulator.client(stripe_secret_key)
        invoice = client.v1.invoices.create(
            params={
                "customer": customer.id,
                "collection_method": "send_invoice",
                "days_until_due": 1,
            },
            options={"idempotency_key": f"create-{index}"},
        )
        client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 100 + index}]})
        finalized = client.v1.invoices.finalize_invoice(invoice.id)
        assert finalized.number is not None
        return finalized.number

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(make, range(40)))
    assert len(set(numbers)) == 40
    sequences = sorted(int(number.rsplit("-", 1)[1]) for number in numbers)
    assert sequences == list(range(1, 41))
    client = stripe_emulator.client(stripe_secret_key)
    assert len(list(client.v1.invoices.list(params={"limit": 100}).auto_paging_iter())) == 40


def test_concurrent_partial_payments_never_overpay(
    stripe_emulator: EmulatorHandle, client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 1}
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 1000}]})
    client.v1.invoices.finalize_invoice(invoice.id)
    outcomes: list[str] = []
    lock = threading.Lock()

    def pay(_: int) -> None:
        try:
            stripe_emulator.pay_invoice(invoice.id, amount=100)
            result = "paid"
        except EmulatorError:
            result = "refused"
        with lock:
            outcomes.append(result)

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(pay, range(12)))
    assert outcomes.count("paid") == 10
    assert outcomes.count("refused") == 2
    final = client.v1.invoices.retrieve(invoice.id)
    assert final.amount_paid == 1000
    assert final.status == "paid"
    types = [event.type for event in client.v1.events.list(params={"limit": 100}).data]
    assert types.count("invoice_payment.paid") == 10
    assert types.count("invoice.paid") == 1


def test_accounts_used_from_threads_stay_separate(stripe_emulator: EmulatorHandle) -> None:
    keys = [stripe_emulator.new_secret_key() for _ in range(6)]

    def work(key: str) -> int:
        client = stripe_emulator.client(key)
        for _ in range(15):
            client.v1.customers.create()
        return len(list(client.v1.customers.list(params={"limit": 100}).auto_paging_iter()))

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(work, keys)) == [15] * 6
