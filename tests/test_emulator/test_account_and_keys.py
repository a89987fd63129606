"""``GET /v1/account`` and the Dashboard's key roll: which account a key belongs to."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_emulator.handle import EmulatorError, EmulatorHandle


def test_the_account_is_the_keys(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    account = client.v1.accounts.retrieve_current()
    assert account.id.startswith("acct_")
    assert (account.type, account.country, account.default_currency) == ("standard", "US", "usd")
    assert (account.charges_enabled, account.payouts_enabled) == (True, True)
    assert client.v1.accounts.retrieve_current().id == account.id  # stable
    other = stripe_emulator.client(stripe_emulator.new_secret_key()).v1.accounts.retrieve_current()
    assert other.id != account.id  # another key, another account


def test_a_rolled_key_is_the_same_account_and_the_old_one_expires(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    customer = client.v1.customers.create(params={"email": "ap@acme.example"})
    account_id = client.v1.accounts.retrieve_current().id
    new_key = stripe_emulator.roll_key(stripe_secret_key, expires_in=3600)
    assert new_key != stripe_secret_key
    assert new_key.startswith("sk_test_")
    rolled = stripe_emulator.client(new_key)
    assert rolled.v1.accounts.retrieve_current().id == account_id
    assert rolled.v1.customers.retrieve(customer.id).email == "ap@acme.example"
    client.v1.customers.retrieve(customer.id)  # the old key works for another hour

    stripe_emulator.advance_clock(3600, secret_key=new_key)
    with pytest.raises(stripe.AuthenticationError) as expired:
        client.v1.customers.retrieve(customer.id)
    assert expired.value.http_status == 401
    body = expired.value.json_body
    assert isinstance(body, dict)
    assert body["error"]["code"] == "api_key_expired"
    assert str(expired.value.user_message).startswith("Expired API Key provided: sk_test_***")
    assert stripe_secret_key not in str(expired.value.user_message)
    assert rolled.v1.customers.retrieve(customer.id).id == customer.id
    # both keys' requests are the account's log
    paths = [entry["path"] for entry in stripe_emulator.requests(new_key)]
    assert paths.count(f"/v1/customers/{customer.id}") == 4
    with pytest.raises(EmulatorError) as roll_expired:
        stripe_emulator.roll_key(stripe_secret_key)
    assert roll_expired.value.status == 401


def test_rolling_now_expires_the_old_key_at_once(
    client: stripe.StripeClient, stripe_emulator: EmulatorHandle, stripe_secret_key: str
) -> None:
    new_key = stripe_emulator.roll_key(stripe_secret_key)
    with pytest.raises(stripe.AuthenticationError):
        client.v1.accounts.retrieve_current()
    assert stripe_emulator.client(new_key).v1.accounts.retrieve_current().id.startswith("acct_")
    with pytest.raises(EmulatorError, match="expires_in"):
        stripe_emulator.roll_key(new_key, expires_in=-1)
