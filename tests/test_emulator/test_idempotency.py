"""Idempotency keys: replay of the first response, mismatch, expiry, concurrency."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorHandle


def test_same_key_same_params_replays_the_first_response(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    params: stripe.params.CustomerCreateParams = {"email": "a@example.com"}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "cus-1"})
    second = client.v1.customers.create(params=params, options={"idempotency_key": "cus-1"})
    assert first.id == second.id
    assert second.last_response is not None
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(client.v1.customers.list().data) == 1
    log = stripe_emulator.requests(stripe_secret_key)
    assert [entry["idempotent_replayed"] for entry in log] == [False, True, False]


def test_a_request_whose_body_never_arrived_runs_nothing_and_takes_no_key(
    client: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    stripe_secret_key: str,
    customer: stripe.Customer,
) -> None:
    """A client killed between sending its headers and its body (urllib3 sends them apart):
    the emulator used to run the request with an empty body and store its 400 under the key,
    so the client's retry with the real parameters got an idempotency_error."""
    host, port = urlsplit(stripe_emulator.base_url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/invoices HTTP/1.1\r\nHost: emulator\r\n"
            + f"Authorization: Bearer {stripe_secret_key}\r\n".encode()
            + b"Idempotency-Key: cut-short\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n"
            b"customer=cus_"
        )
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1024) == b""  # dropped unanswered
    invoice = client.v1.invoices.create(
        params={"customer": customer.id}, options={"idempotency_key": "cut-short"}
    )
    assert invoice.customer == customer.id
    log = stripe_emulator.requests(stripe_secret_key)
    assert [(entry["path"], entry["idempotent_replayed"]) for entry in log] == [
        ("/v1/customers", False),
        ("/v1/invoices", False),
    ]


def test_same_key_other_params_is_an_idempotency_error(client: stripe.StripeClient) -> None:
    client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k"})
    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.customers.create(
            params={"email": "b@example.com"}, options={"idempotency_key": "k"}
        )
    assert caught.value.http_status == 400
    assert caught.value.error is not None
    assert caught.value.error.type == "idempotency_error"
    assert len(client.v1.customers.list().data) == 1


def test_errors_are_replayed_too(client: stripe.StripeClient, customer: stripe.Customer) -> None:
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoices.finalize_invoice(invoice.id, options={"idempotency_key": "fin"})
    # A different key reaches the handler: the invoice is no longer a draft.
    with pytest.raises(stripe.InvalidRequestError) as fresh:
        client.v1.invoices.finalize_invoice(invoice.id, options={"idempotency_key": "fin-2"})
    assert fresh.value.code == "invoice_not_editable"
    # Replaying that key replays the error, status and body, marked as a replay.
    with pytest.raises(stripe.InvalidRequestError) as replayed:
        client.v1.invoices.finalize_invoice(invoice.id, options={"idempotency_key": "fin-2"})
    assert replayed.value.http_body == fresh.value.http_body
    assert replayed.value.headers is not None
    assert replayed.value.headers.get("Idempotent-Replayed") == "true"


def test_validation_errors_are_not_saved(client: stripe.StripeClient) -> None:
    """Stripe saves no result when parameters fail validation: a corrected retry may run."""
    with pytest.raises(stripe.InvalidRequestError):
        client.raw_request(
            "post",
            "/v1/customers",
            email="a@example.com",
            bogus="1",
            options={"idempotency_key": "v"},
        )
    created = client.v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "v"}
    )
    assert created.email == "a@example.com"


def test_keys_are_per_account(stripe_emulator: EmulatorHandle) -> None:
    first = stripe_emulator.client(stripe_emulator.new_secret_key())
    second = stripe_emulator.client(stripe_emulator.new_secret_key())
    a = first.v1.customers.create(params={"email": "a@x.example"}, options={"idempotency_key": "s"})
    b = second.v1.customers.create(
        params={"email": "b@x.example"}, options={"idempotency_key": "s"}
    )
    assert a.id != b.id


def test_keys_expire_after_24_hours(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    first = client.v1.customers.create(
        params={"email": "a@x.example"}, options={"idempotency_key": "e"}
    )
    stripe_emulator.advance_clock(23 * 3600)
    assert (
        client.v1.customers.create(
            params={"email": "a@x.example"}, options={"idempotency_key": "e"}
        ).id
        == first.id
    )
    stripe_emulator.advance_clock(3600 + 1)
    later = client.v1.customers.create(
        params={"email": "other@x.example"}, options={"idempotency_key": "e"}
    )
    assert later.id != first.id


def test_concurrent_requests_with_one_key_create_one_object(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    """In-flight duplicates get 409 (stripe-python retries 409), never a second object."""
    stripe_emulator.configure(stripe_secret_key, latency=0.2)
    results: list[str] = []
    errors: list[int | None] = []

    def create() -> None:
        client = stripe_emulator.client(stripe_secret_key)
        try:
            customer = client.v1.customers.create(
                params={"email": "race@x.example"}, options={"idempotency_key": "race"}
            )
            results.append(customer.id)
        except stripe.APIError as exc:
            errors.append(exc.http_status)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stripe_emulator.configure(stripe_secret_key, latency=0.0)
    client = stripe_emulator.client(stripe_secret_key)
    assert len(client.v1.customers.list().data) == 1
    assert len(set(results)) == 1
    assert set(errors) <= {409}
