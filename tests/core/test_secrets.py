"""Stripe secrets are encrypted at rest, never shown, and fail loudly with the wrong key."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.core import serializers
from django.db import connection

from invoicing.fields import SecretDecryptionError
from invoicing.models import Conference
from tests.core.conftest import MakeConference

pytestmark = pytest.mark.django_db

SECRET = "sk_test_51SecretValueForTheTestOnly"
WEBHOOK_SECRET = "whsec_SecretWebhookValueForTheTest"


def raw_columns(conference: Conference) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stripe_secret_key, stripe_webhook_secret "
            "FROM invoicing_conference WHERE id = %s",
            [conference.pk],
        )
        row = cursor.fetchone()
    assert row is not None
    return row[0], row[1]


def test_secrets_are_encrypted_at_rest_and_read_back(make_conference: MakeConference) -> None:
    conference = make_conference(secret_key=SECRET, stripe_webhook_secret=WEBHOOK_SECRET)
    key_column, webhook_column = raw_columns(conference)
    assert SECRET not in key_column
    assert WEBHOOK_SECRET not in webhook_column
    assert key_column.startswith("gAAAAA")
    loaded = Conference.objects.get(pk=conference.pk)
    assert loaded.stripe_secret_key == SECRET
    assert loaded.stripe_webhook_secret == WEBHOOK_SECRET
    assert loaded.stripe_livemode is False


def test_no_secret_is_stored_as_empty(make_conference: MakeConference) -> None:
    conference = make_conference(secret_key="")
    assert raw_columns(conference)[0] == ""
    loaded = Conference.objects.get(pk=conference.pk)
    assert loaded.stripe_secret_key == ""
    assert loaded.has_stripe_key is False
    assert loaded.stripe_livemode is None


def test_wrong_key_raises_instead_of_returning_ciphertext(make_conference: MakeConference) -> None:
    conference = make_conference(secret_key=SECRET)
    foreign_token = Fernet(Fernet.generate_key()).encrypt(SECRET.encode()).decode()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE invoicing_conference SET stripe_secret_key = %s WHERE id = %s",
            [foreign_token, conference.pk],
        )
    with pytest.raises(SecretDecryptionError, match=r"Conference\.stripe_secret_key"):
        Conference.objects.get(pk=conference.pk)


def test_repr_str_and_serialization_never_show_secrets(make_conference: MakeConference) -> None:
    conference = make_conference(secret_key=SECRET, stripe_webhook_secret=WEBHOOK_SECRET)
    assert SECRET not in repr(conference)
    assert SECRET not in str(conference)
    dumped = serializers.serialize("json", [conference])
    assert SECRET not in dumped
    assert WEBHOOK_SECRET not in dumped
    # The dump holds ciphertext that loads back to the secret.
    restored = next(serializers.deserialize("json", dumped)).object
    assert isinstance(restored, Conference)
    assert restored.stripe_secret_key == SECRET
    fields = json.loads(dumped)[0]["fields"]
    assert fields["stripe_secret_key"].startswith("gAAAAA")


@pytest.mark.parametrize(
    ("key", "livemode"),
    [
        ("sk_live_x", True),
        ("rk_live_x", True),
        ("sk_test_x", False),
        ("rk_test_x", False),
        ("pk_test_x", None),
    ],
)
def test_livemode_from_key_prefix(key: str, livemode: bool | None) -> None:
    assert Conference(stripe_secret_key=key).stripe_livemode is livemode
