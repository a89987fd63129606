"""``GET /v1/account``: the Stripe account the secret key belongs to.

Every key of an account answers with the same account id, including a key issued by a key roll
(``/_emulator/keys/roll``), so an integration can check that a new key is for the same account.
"""

from __future__ import annotations

from ..models import JSON
from ..render_account import render_account
from .context import Ctx, Params
from .params import expansions


def retrieve_account(ctx: Ctx, params: Params) -> JSON:
    expansions(params, ())
    return render_account(ctx.account)
