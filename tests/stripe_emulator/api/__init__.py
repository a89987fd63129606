"""Stripe's ``/v1`` API: one module per resource, and :mod:`.routes`, the table of endpoints.

A handler is ``handler(ctx, params, **path_args) -> JSON`` and runs under the store's lock.
Its parameters are already validated against the installed stripe-python's TypedDicts (see
:mod:`..schema`), so it implements only the rules the TypedDicts cannot express: which
combinations are allowed, the lifecycle, money arithmetic, and the events each change emits.
Every rule raises :class:`~..errors.StripeError` *before* mutating anything, so a rejected
request changes nothing.

Modules import downwards only: :mod:`.routes` imports the resource modules, resource modules
import each other in one direction (``invoice_items`` -> ``invoices`` -> ``customers``) and the
shared helpers (:mod:`.context`, :mod:`.params`, :mod:`.lists`, :mod:`.events`), which import
no resource module.
"""
