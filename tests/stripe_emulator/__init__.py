"""A stateful Stripe emulator that stripe-python talks to over HTTP (see README in this folder).

Each layer imports only the ones before it:

- ``models`` (what Stripe stores, per account) and ``render`` (what it returns, field by field;
  ``render_money`` for PaymentIntents, charges, refunds and disputes, ``render_billing`` for
  credit notes and payment records, ``render_account``);
- ``api/`` (what it does: one module per resource, ``api/routes.py`` the table of endpoints);
- ``control`` (``/_emulator``: the Dashboard and the customer; ``control_money``: banks and card
  networks acting on money already paid, and the key roll), ``hosted`` (``/i/<id>``),
  ``webhooks`` (signed delivery); ``pipeline`` (what Stripe does around every ``/v1`` request:
  rate limit, idempotency, faults, validation) and ``server`` (HTTP) on top.

Adding a resource, e.g. refunds: a ``RefundRec`` and its dict on ``Account`` in ``models.py``;
``render_refund`` in a ``render*.py``; ``api/refunds.py`` with its handlers (every rule raises
before anything changes, every change records its events with ``api.events.emit``); its rows in
``api/routes.py``, each naming the stripe-python params class that validates it. What only the
Dashboard, a bank or the customer does (opening a dispute) goes in ``control*.py``.
"""
