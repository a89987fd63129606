"""Injected faults, as stripe-python experiences them, and what they do (not) change."""

from __future__ import annotations

import contextlib

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle


def _customers(client: stripe.StripeClient) -> list[str]:
    return [customer.id for customer in client.v1.customers.list().data]


def test_500_changes_nothing_and_is_replayed_for_the_same_key(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, client: stripe.StripeClient
) -> None:
    stripe_emulator.configure(stripe_secret_key, fail_next=["500"])
    with pytest.raises(stripe.APIError) as caught:
        client.v1.customers.create(
            params={"email": "a@x.example"}, options={"idempotency_key": "k1"}
        )
    assert caught.value.http_status == 500
    assert caught.value.headers is not None
    assert caught.value.headers.get("Stripe-Should-Retry") == "false"
    assert _customers(client) == []
    with pytest.raises(stripe.APIError) as replayed:
        client.v1.customers.create(
            params={"email": "a@x.example"}, options={"idempotency_key": "k1"}
        )
    assert replayed.value.headers is not None
    assert replayed.value.headers.get("Idempotent-Replayed") == "true"
    assert _customers(client) == []
    created = client.v1.customers.create(
        params={"email": "a@x.example"}, options={"idempotency_key": "k2"}
    )
    assert _customers(client) == [created.id]


def test_get_500_is_retried_by_stripe_python(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    client = stripe_emulator.client(stripe_secret_key, max_network_retries=2)
    stripe_emulator.configure(stripe_secret_key, fail_next=[{"error": "500", "method": "GET"}])
    assert client.v1.customers.list().data == []
    log = stripe_emulator.requests(stripe_secret_key)
    assert [(entry["status"], entry["fault"]) for entry in log] == [(500, "500"), (200, None)]


def test_429_without_should_retry_is_not_retried(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    client = stripe_emulator.client(stripe_secret_key, max_network_retries=3)
    stripe_emulator.configure(stripe_secret_key, fail_next=["429"])
    with pytest.raises(stripe.RateLimitError) as caught:
        client.v1.customers.create()
    assert caught.value.error is not None
    assert caught.value.error.code == "rate_limit"
    assert len(stripe_emulator.requests(stripe_secret_key)) == 1
    assert _customers(client) == []


@pytest.mark.parametrize("kind", ["429_should_retry", "lock_timeout"])
def test_retryable_429s_are_retried_with_the_same_key(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, kind: str
) -> None:
    client = stripe_emulator.client(stripe_secret_key, max_network_retries=2)
    stripe_emulator.configure(stripe_secret_key, fail_next=[kind])
    created = client.v1.customers.create(params={"email": "r@x.example"})
    log = stripe_emulator.requests(stripe_secret_key)
    posts = [entry for entry in log if entry["method"] == "POST"]
    assert [(entry["status"], entry["fault"]) for entry in posts] == [(429, kind), (200, None)]
    assert posts[0]["idempotency_key"] == posts[1]["idempotency_key"]
    assert _customers(client) == [created.id]


def test_lock_timeout_error_shape(stripe_emulator: EmulatorHandle, stripe_secret_key: str) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    stripe_emulator.configure(stripe_secret_key, fail_next=["lock_timeout"])
    with pytest.raises(stripe.RateLimitError) as caught:
        client.v1.customers.create()
    assert caught.value.http_status == 429
    assert caught.value.error is not None
    assert caught.value.error.code == "lock_timeout"
    assert caught.value.headers is not None
    assert caught.value.headers.get("Stripe-Should-Retry") == "true"


def test_connection_reset_before_execution(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    stripe_emulator.configure(stripe_secret_key, fail_next=["connection_reset"])
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(options={"idempotency_key": "reset"})
    assert _customers(client) == []
    # Nothing ran, so nothing was saved under the key: the retry runs.
    created = client.v1.customers.create(options={"idempotency_key": "reset"})
    assert _customers(client) == [created.id]


def test_reset_after_commit_plus_retry_creates_one_object(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    """The nastiest failure: Stripe did the work, the answer was lost. Idempotency saves us."""
    client = stripe_emulator.client(stripe_secret_key, max_network_retries=2)
    stripe_emulator.configure(stripe_secret_key, fail_next=["reset_after_commit"])
    created = client.v1.customers.create(params={"email": "once@x.example"})
    assert _customers(client) == [created.id]
    posts = [e for e in stripe_emulator.requests(stripe_secret_key) if e["method"] == "POST"]
    assert [(e["fault"], e["idempotent_replayed"]) for e in posts] == [
        ("reset_after_commit", False),
        (None, True),
    ]


def test_reset_after_commit_without_retries_leaves_the_object(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    stripe_emulator.configure(stripe_secret_key, fail_next=["reset_after_commit"])
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"email": "lost@x.example"})
    assert len(_customers(client)) == 1


def test_sandbox_rate_limit(stripe_emulator: EmulatorHandle, stripe_secret_key: str) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    # On by default, as at Stripe: 25 requests/s per sandbox account (100 in live mode).
    assert stripe_emulator.config(stripe_secret_key)["rate_limit"] == 25
    live_key = stripe_emulator.new_secret_key(livemode=True)
    assert stripe_emulator.config(live_key)["rate_limit"] == 100
    statuses = []
    codes = set()
    for _ in range(40):
        try:
            client.v1.customers.create()
            statuses.append(200)
        except stripe.RateLimitError as exc:
            codes.add(exc.error.code if exc.error else None)
            statuses.append(429)
    assert codes == {"rate_limit"}
    created = statuses.count(200)
    assert 429 in statuses
    assert 25 <= created < 40
    stripe_emulator.configure(stripe_secret_key, rate_limit=None)
    assert len(list(client.v1.customers.list(params={"limit": 100}).auto_paging_iter())) == created


def test_error_rate_is_reproducible_with_a_seed(
    stripe_emulator: EmulatorHandle,
) -> None:
    def run(key: str) -> list[str | None]:
        client = stripe_emulator.client(key)
        stripe_emulator.configure(
            key, seed=42, error_rate=0.5, errors=["500", "429", "lock_timeout"]
        )
        for _ in range(30):
            with contextlib.suppress(stripe.StripeError):
                client.v1.customers.list()
        return [entry["fault"] for entry in stripe_emulator.requests(key)]

    first = run(stripe_emulator.new_secret_key())
    second = run(stripe_emulator.new_secret_key())
    assert first == second
    assert {None, "500", "429", "lock_timeout"} == set(first)


def test_error_methods_limits_faults(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    stripe_emulator.configure(stripe_secret_key, error_rate=1.0, error_methods=["POST"])
    assert client.v1.customers.list().data == []
    with pytest.raises(stripe.APIError):
        client.v1.customers.create()


def test_latency_is_added(stripe_emulator: EmulatorHandle, stripe_secret_key: str) -> None:
    client = stripe_emulator.client(stripe_secret_key)
    stripe_emulator.configure(stripe_secret_key, latency=0.15)
    client.v1.customers.list()
    assert stripe_emulator.requests(stripe_secret_key)[0]["duration_ms"] >= 150


def test_fail_next_matches_method_and_path(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create()
    invoice = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 100}]})
    stripe_emulator.configure(
        stripe_secret_key, fail_next=[{"error": "500", "method": "POST", "path": r"/finalize$"}]
    )
    client.v1.invoices.update(invoice.id, params={"description": "not faulted"})
    with pytest.raises(stripe.APIError):
        client.v1.invoices.finalize_invoice(invoice.id)
    assert client.v1.invoices.retrieve(invoice.id).status == "draft"
    assert client.v1.invoices.finalize_invoice(invoice.id).status == "open"


@pytest.mark.parametrize(
    "options",
    [
        {"error_rate": 2},
        {"errors": ["418"]},
        {"nonsense": True},
        {"fail_next": [{"error": "500", "path": "("}]},
        {"rate_limit": 0},
        {"webhook_retry_schedule": "soon"},
    ],
)
def test_bad_config_is_refused(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str, options: dict[str, object]
) -> None:
    before = stripe_emulator.config(stripe_secret_key)
    with pytest.raises(EmulatorError) as caught:
        stripe_emulator.configure(stripe_secret_key, **options)
    assert caught.value.status == 400
    assert stripe_emulator.config(stripe_secret_key) == before


def test_a_500_after_commit_left_the_object_and_is_replayed_for_its_key(
    stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    """Stripe's 500 is indeterminate: this one did the work, and its key keeps answering 500."""
    client = stripe_emulator.client(stripe_secret_key)
    stripe_emulator.configure(stripe_secret_key, fail_next=["500_after_commit"])
    for _ in range(2):
        with pytest.raises(stripe.APIError) as raised:
            client.v1.customers.create(
                params={"email": "half@x.example"}, options={"idempotency_key": "k-500-commit"}
            )
        assert raised.value.http_status == 500
    assert len(_customers(client)) == 1
    posts = [e for e in stripe_emulator.requests(stripe_secret_key) if e["method"] == "POST"]
    assert [(e["fault"], e["idempotent_replayed"]) for e in posts] == [
        ("500_after_commit", False),
        (None, True),
    ]
