"""Issue 6, case 7: conferences are isolated, and their secrets stay secret.

- An event signed for conference A fails at B's endpoint and changes nothing; A's event recorded at
  B (signed with B's secret, as if B's account carried A's invoice) is parked as failed, and
  neither A's nor B's PO moves.
- Three conferences, each its own emulator account, run the whole life of their POs at the same
  time in threads (creation, payments, webhooks, syncs, reconciliation, void and re-issue,
  cancel): the emulator's request log shows every request that names a conference's object was
  made with that conference's key, and no request was refused for an unknown object.
- The raw database never holds a plaintext key or webhook secret: the encrypted columns read with
  raw SQL, and every row of every table cast to text.
- No log line of the whole suite carries a secret: ``tests/support/secret_guard.py`` (a session
  plugin) checks every record and every subprocess log; here it is shown to fail on a deliberate
  leak, in-process and in a pytester session.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from invoicing.models import Conference, PurchaseOrder, PurchaseOrderPayment, StripeEvent
from invoicing.services import stripe_events, webhook_intake
from invoicing.services.invoice_lifecycle import (
    cancel_invoiced_purchase_order,
    reissue_stripe_invoice,
    void_stripe_invoice,
)
from invoicing.services.invoice_sync import HANDLED_EVENT_TYPES
from invoicing.services.reconciliation import reconcile_conference
from invoicing.services.stripe_invoicing import create_stripe_invoice, sync_stripe_invoice_status
from tests.core.conftest import (  # the core's factories, shared with this directory
    MakeConference,
    MakePurchaseOrder,
    make_conference,
    make_purchase_order,
)
from tests.reliability.conftest import RecordFigures
from tests.stripe_emulator.handle import EmulatorHandle
from tests.stripe_emulator.webhooks import signature_header
from tests.support.consistency import compare_with_stripe
from tests.support.secret_guard import SecretGuard, SecretRegistry, mask, record_text

__all__ = ["make_conference", "make_purchase_order"]

STRIPE_ID = re.compile(r"\b(?:in|cus|ii|inpay|we|evt)_[A-Za-z0-9]+")


def signing_secret(emulator: EmulatorHandle, secret_key: str) -> str:
    """A webhook signing secret of the account (a disabled endpoint: nothing is delivered)."""
    client = emulator.client(secret_key)
    endpoint = client.v1.webhook_endpoints.create(
        {"url": "https://example.invalid/hook", "enabled_events": ["invoice.paid"]}
    )
    client.v1.webhook_endpoints.update(endpoint.id, {"disabled": True})
    assert endpoint.secret is not None
    return endpoint.secret


def table_digests() -> dict[str, tuple[int, str]]:
    """POs, ledger and conferences as PostgreSQL sees them (count, md5 of every row)."""
    digests: dict[str, tuple[int, str]] = {}
    with connection.cursor() as cursor:
        for model in (PurchaseOrder, PurchaseOrderPayment, Conference):
            table = connection.ops.quote_name(model._meta.db_table)
            digest = "coalesce(md5(string_agg(t::text, '|' ORDER BY t.id)), '')"
            cursor.execute(f"SELECT count(*), {digest} FROM {table} t")  # noqa: S608
            row = cursor.fetchone()
            assert row is not None
            digests[model.__name__] = (int(row[0]), str(row[1]))
    return digests


# --- Events at the wrong endpoint ---------------------------------------------------------------


@pytest.mark.django_db
def test_an_event_signed_for_one_conference_fails_at_another(
    client: Client,
    stripe_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
    record_figures: RecordFigures,
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    keys = [stripe_emulator.new_secret_key() for _ in range(2)]
    secrets = [signing_secret(stripe_emulator, key) for key in keys]
    a, b = (
        make_conference(secret_key=key, stripe_webhook_secret=secret)
        for key, secret in zip(keys, secrets, strict=True)
    )
    po_a, po_b = make_purchase_order(conference=a), make_purchase_order(conference=b)
    for po in (po_a, po_b):
        create_stripe_invoice(po)
    stripe_emulator.pay_invoice(po_a.stripe_invoice_id, amount=200_00)
    events = stripe_emulator.raw_events(a.stripe_secret_key)
    assert any(event["type"] == "invoice.updated" for event in events)

    def post(conference: Conference, event: dict[str, Any], secret: str) -> Any:
        body = json.dumps(event).encode()
        return client.post(
            f"/stripe/webhooks/{conference.slug}/",
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature_header(body, secret, int(time.time())),
        )

    refused = 0
    for event in events:  # A's events, signed with A's secret, at B's endpoint
        state = table_digests(), StripeEvent.objects.count()
        response = post(b, event, a.stripe_webhook_secret)
        assert response.status_code == 400
        assert "Signature check failed" in response.json()["error"]
        assert (table_digests(), StripeEvent.objects.count()) == state
        refused += 1

    # A's events signed with B's secret (as if B's account carried A's invoice): recorded at B,
    # then refused by the handler, and nothing of A or B moves.
    before = table_digests()
    failed = 0
    for event in events:
        response = post(b, event, b.stripe_webhook_secret)
        assert response.status_code == 200
        row = StripeEvent.objects.get(stripe_event_id=event["id"])
        result = stripe_events.process_stripe_event(stripe_event_id=row.pk)
        if event["type"] in HANDLED_EVENT_TYPES:
            assert result.status == StripeEvent.Status.FAILED, (event["type"], result)
            assert result.error.startswith("EventRejected"), result.error
            assert b.slug in result.error, result.error  # names the conference it arrived at
            failed += 1
        else:
            assert result.status == StripeEvent.Status.IGNORED, (event["type"], result)
    assert table_digests() == before
    StripeEvent.objects.all().delete()

    # The control: the same events at A's endpoint, signed by A, bring A's payment in.
    for event in events:
        assert post(a, event, a.stripe_webhook_secret).status_code == 200
        row = StripeEvent.objects.get(stripe_event_id=event["id"])
        stripe_events.process_stripe_event(stripe_event_id=row.pk)
    po_a.refresh_from_db()
    po_b.refresh_from_db()
    assert po_a.status == PurchaseOrder.Status.PARTIALLY_PAID
    assert po_b.status == PurchaseOrder.Status.INVOICED
    record_figures(
        refused_at_the_other_endpoint=refused,
        recorded_at_the_other_endpoint_and_failed=failed,
        applied_at_their_own_endpoint=len(events),
    )


# --- Every request with the right key -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("embedded_worker_paused")
def test_every_request_for_a_conferences_objects_carries_its_key(
    stripe_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
    secret_guard: SecretGuard,
    caplog: pytest.LogCaptureFixture,
    record_figures: RecordFigures,
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    conferences = [
        make_conference(
            secret_key=stripe_emulator.new_secret_key(),
            stripe_webhook_secret=f"whsec_{uuid.uuid4().hex}",
        )
        for _ in range(3)
    ]
    pos = {c.pk: [make_purchase_order(conference=c) for _ in range(3)] for c in conferences}

    def in_thread(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            finally:
                connections.close_all()

        return run

    def life(conference: Conference) -> None:
        first, second, third = (PurchaseOrder.objects.get(pk=po.pk) for po in pos[conference.pk])
        for po in (first, second, third):
            create_stripe_invoice(po)
        stripe_emulator.pay_invoice(first.stripe_invoice_id, amount=100_00)
        stripe_emulator.pay_invoice(second.stripe_invoice_id)
        for event in stripe_emulator.raw_events(conference.stripe_secret_key):
            recorded = webhook_intake.record_stripe_event(conference=conference, event=event)
            stripe_events.process_stripe_event(stripe_event_id=recorded.stripe_event.pk)
        sync_stripe_invoice_status(first)
        reissue_stripe_invoice(first)  # part-paid: a credit note closes the rest, not a void
        void_stripe_invoice(third)
        cancel_invoiced_purchase_order(third, reason="isolation test")
        reconcile_conference(conference=conference)

    with caplog.at_level(logging.INFO), ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(in_thread(functools.partial(life, c))) for c in conferences]:
            future.result()

    # Which conference owns each Stripe object, from our side.
    owner: dict[str, int] = {}
    for po in PurchaseOrder.objects.select_related("stripe_customer"):
        if po.stripe_invoice_id:
            owner[po.stripe_invoice_id] = po.conference_id
        if po.stripe_customer is not None and po.stripe_customer.stripe_customer_id:
            owner[po.stripe_customer.stripe_customer_id] = po.conference_id
    for payment in PurchaseOrderPayment.objects.exclude(stripe_invoice_id=""):
        owner[payment.stripe_invoice_id] = payment.purchase_order.conference_id

    checked = 0
    for conference in conferences:
        requests = stripe_emulator.requests(conference.stripe_secret_key)
        assert requests, "the log has this account's requests"
        for entry in requests:
            assert entry["status"] != 404, f"a request found no such object: {entry}"
            text = entry["path"] + " " + json.dumps(entry["params"])
            for object_id in STRIPE_ID.findall(text):
                if object_id in owner:
                    assert owner[object_id] == conference.pk, (
                        f"{entry['method']} {entry['path']} with {conference.slug}'s key names "
                        f"an object of conference id {owner[object_id]}"
                    )
                    checked += 1
        compare_with_stripe(
            emulator=stripe_emulator, conference=conference, expect_invoiced=False
        ).assert_consistent()

    # And none of the conferences' secrets was handed to a logger meanwhile.
    secrets = [c.stripe_secret_key for c in conferences] + [
        c.stripe_webhook_secret for c in conferences
    ]
    assert caplog.records
    for record in caplog.records:
        text = record_text(record)
        assert not [secret for secret in secrets if secret in text], record.name
    assert not [leak for leak in secret_guard.leaks if leak.secret in secrets]
    record_figures(
        conferences=len(conferences),
        api_requests=sum(len(stripe_emulator.requests(c.stripe_secret_key)) for c in conferences),
        object_references_checked=checked,
        log_records_checked=len(caplog.records),
    )


# --- Secrets at rest ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_database_never_holds_a_plaintext_secret(
    stripe_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    make_conference: MakeConference,
    make_purchase_order: MakePurchaseOrder,
    record_figures: RecordFigures,
) -> None:
    settings.STRIPE_API_BASE = stripe_emulator.base_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    conferences = []
    for _ in range(2):
        key = stripe_emulator.new_secret_key()
        conference = make_conference(secret_key=key, stripe_webhook_secret="")
        stripe_events.register_webhook_endpoint(
            conference=conference, url=f"https://example.invalid/stripe/webhooks/{conference.slug}/"
        )
        conference.refresh_from_db()
        po = make_purchase_order(conference=conference)
        create_stripe_invoice(po)  # the key was used, the secret stored: everything written
        conferences.append(conference)
    secrets = [c.stripe_secret_key for c in conferences] + [
        c.stripe_webhook_secret for c in conferences
    ]
    assert all(secret.startswith(("sk_test_", "whsec_")) for secret in secrets)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stripe_secret_key, stripe_webhook_secret FROM invoicing_conference "
            "WHERE id = ANY(%s)",
            [[c.pk for c in conferences]],
        )
        columns = [value for row in cursor.fetchall() for value in row]
        assert len(columns) == 4
        for value in columns:
            assert value.startswith("gAAAAA"), "a Fernet token, not the secret"
            assert not any(secret in value for secret in secrets)
            assert "sk_test_" not in value
            assert "whsec_" not in value

        # Every row of every table, as text: no plaintext secret anywhere in the database.
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        tables = [row[0] for row in cursor.fetchall()]
        for table in tables:
            quoted = connection.ops.quote_name(table)
            for secret in secrets:
                cursor.execute(
                    f"SELECT count(*) FROM {quoted} t WHERE strpos(t::text, %s) > 0",  # noqa: S608
                    [secret],
                )
                row = cursor.fetchone()
                assert row is not None
                assert row[0] == 0, f"table {table} holds {mask(secret)} in plaintext"
    record_figures(tables_scanned=len(tables), secrets_looked_for=len(secrets))


# --- The log guard can fail ---------------------------------------------------------------------


def test_the_scanner_finds_known_secrets_only() -> None:
    registry = SecretRegistry()
    key = "sk_test_" + "Ab1" * 10
    whsec = "whsec_" + "Zy9+/" * 6
    odd = "not-shaped-like-stripe-0123456789"
    for value in (key, whsec, odd, "sk_test_ab"):
        registry.add(value)
    assert registry.find(f"Authorization: Bearer {key}") == [key]
    assert registry.find(f"key={key}&x=1") == [key]
    assert registry.find(f"prefix_{key}_and_more") == [key]  # glued to other text
    assert registry.find(f"secret={whsec}.") == [whsec]
    assert registry.find(f"the value {odd} leaked") == [odd]
    assert registry.find("sk_test_ab is too short to be told apart") == []
    assert registry.find(f"masked sk_test_\u2026{key[-4:]} is fine") == []
    assert registry.find(key[:-1]) == []  # a truncated key is not the key
    assert registry.find("sk_test_" + "Zz9" * 10) == []  # an unknown key
    assert mask(key) == "sk_test_\u2026" + key[-4:]


def test_a_leak_in_this_process_is_caught(secret_guard: SecretGuard) -> None:
    key = f"sk_test_{uuid.uuid4().hex}"
    secret_guard.registry.add(key)
    guard = SecretGuard(registry=secret_guard.registry)  # a private guard: same secrets
    record = logging.LogRecord("probe", logging.WARNING, __file__, 1, "key %s", (key,), None)
    assert [leak.secret for leak in guard.scan(record_text(record), source="probe")] == [key]
    extra = logging.makeLogRecord({"msg": "no key here", "stripe_key": key})
    assert guard.scan(record_text(extra), source="extra")
    clean = logging.makeLogRecord({"msg": f"masked sk_test_\u2026{key[-4:]}"})
    assert guard.scan(record_text(clean), source="clean") == []


LEAKING_TESTS = """
import logging
from tests.support.secret_guard import register_secret

KEY = "sk_test_{token}"

def test_leaks_a_key_to_a_logger():
    register_secret(KEY)
    logging.getLogger("invoicing.probe").warning("calling Stripe with %s", KEY)

def test_a_subprocess_log_with_a_webhook_secret(tmp_path):
    register_secret("whsec_{token}")
    (tmp_path / "worker.log").write_text("worker started, secret whsec_{token}\\n")
"""
CLEAN_TESTS = """
import logging
from tests.support.secret_guard import register_secret

def test_logs_only_a_masked_key():
    register_secret("sk_test_{token}")
    logging.getLogger("invoicing.probe").warning("calling Stripe with sk_test_...{last4}")
"""


def run_inner_session(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    """A pytest session in a subprocess with only the guard as plugin, on ``source``."""
    pytester.makepyfile(test_inner=source)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    return pytester.runpytest_subprocess(
        "-p", "tests.support.secret_guard", "-p", "no:django", "-p", "no:celery",
        "-p", "no:pytest_docker_tools", "--basetemp", str(pytester.path / "basetemp"),
    )  # fmt: skip


def test_a_deliberate_leak_fails_the_whole_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.processes import REPO_ROOT

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the inner session imports the guard
    token = uuid.uuid4().hex
    leaking = run_inner_session(pytester, LEAKING_TESTS.format(token=token))
    output = leaking.stdout.str()
    assert leaking.ret == pytest.ExitCode.TESTS_FAILED, output
    assert "2 passed" in output  # the tests themselves pass: the guard fails the session
    assert "SECRETS IN LOGS" in output
    assert "test_leaks_a_key_to_a_logger: log record of 'invoicing.probe'" in output
    assert "(subprocess log): file " in output
    assert "worker.log carries whsec_\u2026" in output
    assert token not in output.replace(f"\u2026{token[-4:]}", "")  # reported masked only

    clean = run_inner_session(pytester, CLEAN_TESTS.format(token=token, last4=token[-4:]))
    assert clean.ret == pytest.ExitCode.OK, clean.stdout.str()
    assert "no secret in any of them" in clean.stdout.str()
