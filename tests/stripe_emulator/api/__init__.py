"""Stripe's ``/v1`` API: one module per resource, and :mod:`.routes`, the table of endpoints.

A handler is ``handler(ctx, params, **path_args) -> JSON`` and runs under the store's lock.
Its parameters are already validated against the installed stripe-python's TypedDicts (see
:mod:`..schema`), so it implements only the rules the TypedDicts cannot express: which
combinations are allowed, the lifecycle, money arithmetic, and the events each change emits.
Every rule raises :class:`~..errors.StripeError` *before* mutating anything, so a rejected
request changes nothing.

Imports point one way: :mod:`.routes` imports the resource modules; a resource module imports
the shared helpers (:mod:`.context`, :mod:`.params`, :mod:`.lists`, :mod:`.events`,
:mod:`.pricing`) and the resources it builds on (``invoice_lifecycle`` -> ``invoice_payments``,
``invoices`` -> ``customers``), never the routes; the helpers import no resource module.
"""
