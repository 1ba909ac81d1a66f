"""What the broker says this bot sent: our intent ids in orderRefs, and the bracket behind them."""

from __future__ import annotations

import math

import pytest

from common.messages import Right, Signal
from supervisor.broker.base import Fill, OpenOrder
from supervisor.trading.broker_refs import (
    ADOPTED,
    bracket_parts,
    intent_from,
    intent_ref,
    sent_at,
)

pytestmark = pytest.mark.timeout(30)

ID = "0123456789abcdef"


def part(
    order_id: int,
    action: str,
    order_type: str,
    ref: str = ID,
    parent_id: int = 0,
    perm_id: int = 0,
    account: str = "DU1",
    right: str = "P",
    limit: float = math.nan,
    aux: float = math.nan,
    oca: str = "",
) -> OpenOrder:
    return OpenOrder(
        order_id,
        ref,
        "Submitted",
        action,
        4.0,
        order_type,
        "QQQ",
        "OPT",
        "20261204",
        606.0,
        right,
        limit,
        aux,
        perm_id or 900 + order_id,
        parent_id=parent_id,
        account=account,
        oca_group=oca,
        client_id=7,
    )


BRACKET = [
    part(1, "BUY", "LMT", limit=0.50),
    part(2, "SELL", "LMT", parent_id=1, limit=0.75, oca=f"oca-{ID}"),
    part(3, "SELL", "STP", parent_id=1, aux=0.35, oca=f"oca-{ID}"),
]


@pytest.mark.parametrize(
    "ref, expected",
    [
        (ID, ID),
        (f"{ID}:expiry", ID),
        (f"{ID}.2", f"{ID}.2"),
        (f"{ID}.2:expiry", f"{ID}.2"),
        ("ours", None),
        ("", None),
        (ID.upper(), None),
        (ID + "0", None),
        (f"{ID}.0", None),
        ("manual-hedge", None),
    ],
)
def test_only_refs_shaped_like_our_intent_ids_are_ours(ref, expected):
    assert intent_ref(ref) == expected


def test_open_orders_of_the_account_and_todays_executions_name_what_was_sent():
    # Given an open bracket of ours, one of another account, a sale before expiry and an
    # execution of an intent that no longer works, beside the user's own order
    other = "fedcba9876543210"
    orders = [
        *BRACKET,
        part(9, "BUY", "LMT", ref=other, account="DU2"),
        part(10, "SELL", "LMT", ref="1111111111111111:expiry"),
        part(11, "BUY", "LMT", ref="hedge"),
    ]
    fills = [Fill("e1", 5, "2222222222222222", "BOT", 1, 1.0, 0.0)]
    # Then every intent id of ours at the broker for this account is named, nothing else
    assert sent_at(orders, fills, "DU1") == {ID, "1111111111111111", "2222222222222222"}
    assert other in sent_at(orders, fills)  # no account given: every account's


def test_a_bracket_is_matched_by_ref_parent_and_oca_group_with_all_three_ids():
    parts = bracket_parts(BRACKET, ID)
    assert (parts.entry, parts.take_profit, parts.stop) == tuple(BRACKET)
    assert parts.ids() == {"order_ids": [1, 2, 3], "perm_ids": [901, 902, 903]}
    # exits whose entry has left the list (it filled): the entry's id from their parentId
    exits = bracket_parts(BRACKET[1:], ID)
    assert exits.entry is None and exits.ids()["order_ids"] == [1, 2, 3]
    assert exits.ids()["perm_ids"] == [0, 902, 903]
    # a take-profit that never reached IBKR: 0 in its place
    assert bracket_parts([BRACKET[0], BRACKET[2]], ID).ids()["order_ids"] == [1, 0, 3]


def test_an_intent_is_rebuilt_from_its_bracket_at_the_broker():
    intent = intent_from(bracket_parts(BRACKET, ID))
    assert intent is not None
    assert (intent.intent_id, intent.contract.key, intent.contract.right) == (
        ID,
        "QQQ 20261204 606P",
        Right.PUT,
    )
    assert intent.signal is Signal.SELL  # a put is bought on a SELL signal
    assert (intent.entry_limit, intent.take_profit, intent.stop_loss) == (0.50, 0.75, 0.35)
    assert intent.reasons == (ADOPTED,)
    # without its stop listed, the stop's price is not known (not guessed)
    assert math.isnan(intent_from(bracket_parts(BRACKET[:2], ID)).stop_loss)  # type: ignore[union-attr]
