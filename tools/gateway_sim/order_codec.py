"""placeOrder decoding and openOrder / completedOrder encoding (server version 157..178).

Orders are kept as ``dict[str, str]`` keyed by ib_insync's ``Order`` attribute names, holding
the raw wire text, so a test can check any field exactly as the client sent it and the
echo in openOrder parses back to the same value. Combo (BAG) legs, delta-neutral, scale,
hedge, algo and conditions are decoded (to keep the cursor aligned) but echoed as empty.
"""

from __future__ import annotations

from collections.abc import Sequence

from tools.gateway_sim.codec import UNSET_DOUBLE, ContractFields, FieldReader, FieldValue

UNSET_DOUBLE_RAW = ("", "1.7976931348623157e+308", "1.7976931348623157E308")

HEAD = (
    "action",
    "totalQuantity",
    "orderType",
    "lmtPrice",
    "auxPrice",
    "tif",
    "ocaGroup",
    "account",
    "openClose",
    "origin",
    "orderRef",
    "transmit",
    "parentId",
    "blockOrder",
    "sweepToFill",
    "displaySize",
    "triggerMethod",
    "outsideRth",
    "hidden",
)
MIDDLE = (
    "_sharesAllocation",
    "discretionaryAmt",
    "goodAfterTime",
    "goodTillDate",
    "faGroup",
    "faMethod",
    "faPercentage",
    "faProfile",
    "modelCode",
    "shortSaleSlot",
    "designatedLocation",
    "exemptCode",
    "ocaType",
    "rule80A",
    "settlingFirm",
    "allOrNone",
    "minQty",
    "percentOffset",
    "eTradeOnly",
    "firmQuoteOnly",
    "nbboPriceCap",
    "auctionStrategy",
    "startingPrice",
    "stockRefPrice",
    "delta",
    "stockRangeLower",
    "stockRangeUpper",
    "overridePercentageConstraints",
    "volatility",
    "volatilityType",
    "deltaNeutralOrderType",
    "deltaNeutralAuxPrice",
)
DELTA_NEUTRAL = (
    "deltaNeutralConId",
    "deltaNeutralSettlingFirm",
    "deltaNeutralClearingAccount",
    "deltaNeutralClearingIntent",
    "deltaNeutralOpenClose",
    "deltaNeutralShortSale",
    "deltaNeutralShortSaleSlot",
    "deltaNeutralDesignatedLocation",
)
SCALE = (
    "continuousUpdate",
    "referencePriceType",
    "trailStopPrice",
    "trailingPercent",
    "scaleInitLevelSize",
    "scaleSubsLevelSize",
    "scalePriceIncrement",
)
SCALE_EXTRA = (
    "scalePriceAdjustValue",
    "scalePriceAdjustInterval",
    "scaleProfitOffset",
    "scaleAutoReset",
    "scaleInitPosition",
    "scaleInitFillQty",
    "scaleRandomPercent",
)
MISC = ("scaleTable", "activeStartTime", "activeStopTime", "hedgeType")
CLEARING = ("optOutSmartRouting", "clearingAccount", "clearingIntent", "notHeld")
WHAT_IF = ("algoId", "whatIf", "orderMiscOptions", "solicited", "randomizeSize", "randomizePrice")
PEG_BENCH = (
    "referenceContractId",
    "isPeggedChangeAmountDecrease",
    "peggedChangeAmount",
    "referenceChangeAmount",
    "referenceExchangeId",
)
ADJUSTED = (
    "adjustedOrderType",
    "triggerPrice",
    "lmtPriceOffset",
    "adjustedStopPrice",
    "adjustedStopLimitPrice",
    "adjustedTrailingAmount",
    "adjustableTrailingUnit",
    "extOperator",
    "softDollarTierName",
    "softDollarTierVal",
    "cashQty",
    "mifid2DecisionMaker",
    "mifid2DecisionAlgo",
    "mifid2ExecutionTrader",
    "mifid2ExecutionAlgo",
    "dontUseAutoPriceForHedge",
    "isOmsContainer",
    "discretionaryUpToLimitPrice",
    "usePriceMgmtAlgo",
)
# fields of each order condition type after the type itself (ib_insync order.py)
CONDITION_SIZES = {1: 6, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5}


def _read(r: FieldReader, names: Sequence[str], out: dict[str, str]) -> None:
    for name in names:
        out[name] = r.text()


def _is_set_double(raw: str) -> bool:
    return raw not in UNSET_DOUBLE_RAW and raw.lower() != "1.7976931348623157e+308"


def decode_place_order(
    r: FieldReader, server_version: int
) -> tuple[int, ContractFields, dict[str, str]]:
    """Read a placeOrder (message 3) after its id; return (orderId, contract, order)."""
    order_id = r.integer()
    contract = r.contract()
    o: dict[str, str] = {"secIdType": r.text(), "secId": r.text()}
    _read(r, HEAD, o)
    if contract.sec_type == "BAG":
        _skip_combo(r)
    _read(r, MIDDLE, o)
    if o["deltaNeutralOrderType"]:
        _read(r, DELTA_NEUTRAL, o)
    _read(r, SCALE, o)
    increment = o["scalePriceIncrement"]
    if _is_set_double(increment) and 0 < float(increment) < UNSET_DOUBLE:
        _read(r, SCALE_EXTRA, o)
    _read(r, MISC, o)
    if o["hedgeType"]:
        o["hedgeParam"] = r.text()
    _read(r, CLEARING, o)
    if r.flag():
        r.skip(3)  # delta-neutral contract: conId, delta, price
    o["algoStrategy"] = r.text()
    if o["algoStrategy"]:
        r.skip(2 * r.integer())
    _read(r, WHAT_IF, o)
    if o["orderType"] == "PEG BENCH":
        _read(r, PEG_BENCH, o)
    _skip_conditions(r, o)
    _read(r, ADJUSTED, o)
    _read_versioned_tail(r, o, contract, server_version)
    return order_id, contract, o


def _skip_combo(r: FieldReader) -> None:
    r.skip(8 * r.integer())  # contract legs
    r.skip(r.integer())  # order combo leg prices
    r.skip(2 * r.integer())  # smart combo routing params


def _skip_conditions(r: FieldReader, o: dict[str, str]) -> None:
    count = r.integer()
    o["conditionsCount"] = str(count)
    for _ in range(count):
        cond_type = r.integer()
        r.skip(CONDITION_SIZES.get(cond_type, 0))
    if count:
        _read(r, ("conditionsIgnoreRth", "conditionsCancelOrder"), o)


def _read_versioned_tail(
    r: FieldReader, o: dict[str, str], c: ContractFields, version: int
) -> None:
    tail = [
        (158, "duration"),
        (160, "postToAts"),
        (162, "autoCancelParent"),
        (166, "advancedErrorOverride"),
        (169, "manualOrderTime"),
    ]
    for minimum, name in tail:
        if version >= minimum:
            o[name] = r.text()
    if version < 170:
        return
    if c.exchange == "IBKRATS":
        o["minTradeQty"] = r.text()
    if o["orderType"] == "PEG BEST":
        _read(r, ("minCompeteSize", "competeAgainstBestOffset"), o)
        if o["competeAgainstBestOffset"].lower() == "infinite":
            _read(r, ("midOffsetAtWhole", "midOffsetAtHalf"), o)
    elif o["orderType"] == "PEG MID":
        _read(r, ("midOffsetAtWhole", "midOffsetAtHalf"), o)


def is_flag(o: dict[str, str], name: str) -> bool:
    return o.get(name, "") not in ("", "0")


def number(o: dict[str, str], name: str) -> float | None:
    raw = o.get(name, "")
    return float(raw) if _is_set_double(raw) else None


OPEN_ORDER_HEAD = (
    "action",
    "totalQuantity",
    "orderType",
    "lmtPrice",
    "auxPrice",
    "tif",
    "ocaGroup",
    "account",
    "openClose",
    "origin",
    "orderRef",
    "clientId",
    "permId",
    "outsideRth",
    "hidden",
    "discretionaryAmt",
    "goodAfterTime",
    "_sharesAllocation",
    "faGroup",
    "faMethod",
    "faPercentage",
    "faProfile",
    "modelCode",
    "goodTillDate",
    "rule80A",
    "percentOffset",
    "settlingFirm",
    "shortSaleSlot",
    "designatedLocation",
    "exemptCode",
    "auctionStrategy",
    "startingPrice",
    "stockRefPrice",
    "delta",
    "stockRangeLower",
    "stockRangeUpper",
    "displaySize",
    "blockOrder",
    "sweepToFill",
    "allOrNone",
    "minQty",
    "ocaType",
    "eTradeOnly",
    "firmQuoteOnly",
    "nbboPriceCap",
    "parentId",
    "triggerMethod",
    "volatility",
    "volatilityType",
)
OPEN_ORDER_TAIL = (
    "adjustedOrderType",
    "triggerPrice",
    "trailStopPrice",
    "lmtPriceOffset",
    "adjustedStopPrice",
    "adjustedStopLimitPrice",
    "adjustedTrailingAmount",
    "adjustableTrailingUnit",
    "softDollarTierName",
    "softDollarTierVal",
    "_softDollarDisplay",
    "cashQty",
    "dontUseAutoPriceForHedge",
    "isOmsContainer",
    "discretionaryUpToLimitPrice",
    "usePriceMgmtAlgo",
)
STATE_FIELDS = (
    "initMarginBefore",
    "maintMarginBefore",
    "equityWithLoanBefore",
    "initMarginChange",
    "maintMarginChange",
    "equityWithLoanChange",
    "initMarginAfter",
    "maintMarginAfter",
    "equityWithLoanAfter",
)


def encode_open_order(
    order_id: int,
    head: list[FieldValue],
    o: dict[str, str],
    status: str,
    state: dict[str, FieldValue],
    version: int,
) -> list[FieldValue]:
    """openOrder (message 5); ``head`` is the 11 contract fields; ``state`` the OrderState."""
    g = o.get
    fields: list[FieldValue] = [5, order_id, *head]
    fields += [g(name, "") for name in OPEN_ORDER_HEAD]
    fields += ["", ""]  # deltaNeutralOrderType, deltaNeutralAuxPrice
    fields += [
        g("continuousUpdate", "0"),
        g("referencePriceType", ""),
        g("trailStopPrice", ""),
        g("trailingPercent", ""),
        "",
        "",
        "",
    ]  # basisPoints, basisPointsType, legsDescrip
    fields += [0, 0, 0]  # combo legs, order combo legs, smart combo routing params
    fields += [g("scaleInitLevelSize", ""), g("scaleSubsLevelSize", ""), ""]
    fields += [""]  # hedgeType
    fields += [
        g("optOutSmartRouting", "0"),
        g("clearingAccount", ""),
        g("clearingIntent", ""),
        g("notHeld", "0"),
        0,
        "",
    ]  # no delta-neutral contract, no algo
    fields += [g("solicited", "0"), g("whatIf", "0"), status]
    fields += [state.get(name, "") for name in STATE_FIELDS]
    fields += [
        state.get("commission", UNSET_DOUBLE),
        state.get("minCommission", UNSET_DOUBLE),
        state.get("maxCommission", UNSET_DOUBLE),
        state.get("commissionCurrency", ""),
        state.get("warningText", ""),
        g("randomizeSize", "0"),
        g("randomizePrice", "0"),
    ]
    if g("orderType") == "PEG BENCH":
        fields += [g(name, "") for name in PEG_BENCH]
    fields += [0]  # conditions
    fields += [g(name, "") for name in OPEN_ORDER_TAIL]
    fields += _version_tail(o, version)
    return fields


def _version_tail(o: dict[str, str], version: int) -> list[FieldValue]:
    out: list[FieldValue] = []
    if version >= 159:
        out.append(o.get("duration", ""))
    if version >= 160:
        out.append(o.get("postToAts", ""))
    if version >= 162:
        out.append(o.get("autoCancelParent", "0"))
    if version >= 170:
        out += [
            o.get(n, "")
            for n in (
                "minTradeQty",
                "minCompeteSize",
                "competeAgainstBestOffset",
                "midOffsetAtWhole",
                "midOffsetAtHalf",
            )
        ]
    return out


COMPLETED_HEAD = (
    "action",
    "totalQuantity",
    "orderType",
    "lmtPrice",
    "auxPrice",
    "tif",
    "ocaGroup",
    "account",
    "openClose",
    "origin",
    "orderRef",
    "permId",
    "outsideRth",
    "hidden",
    "discretionaryAmt",
    "goodAfterTime",
    "faGroup",
    "faMethod",
    "faPercentage",
    "faProfile",
    "modelCode",
    "goodTillDate",
    "rule80A",
    "percentOffset",
    "settlingFirm",
    "shortSaleSlot",
    "designatedLocation",
    "exemptCode",
    "startingPrice",
    "stockRefPrice",
    "delta",
    "stockRangeLower",
    "stockRangeUpper",
    "displaySize",
    "sweepToFill",
    "allOrNone",
    "minQty",
    "ocaType",
    "triggerMethod",
    "volatility",
    "volatilityType",
)


def encode_completed_order(
    head: list[FieldValue], o: dict[str, str], status: str, completed_time: str, version: int
) -> list[FieldValue]:
    """completedOrder (message 101) for a filled or cancelled order."""
    g = o.get
    fields: list[FieldValue] = [101, *head]
    fields += [g(name, "") for name in COMPLETED_HEAD]
    fields += ["", ""]  # deltaNeutralOrderType, deltaNeutralAuxPrice
    fields += [
        g("continuousUpdate", "0"),
        g("referencePriceType", ""),
        g("trailStopPrice", ""),
        g("trailingPercent", ""),
        "",
    ]
    fields += [0, 0, 0, g("scaleInitLevelSize", ""), g("scaleSubsLevelSize", ""), "", ""]
    fields += [g("clearingAccount", ""), g("clearingIntent", ""), g("notHeld", "0"), 0, ""]
    fields += [g("solicited", "0"), status, g("randomizeSize", "0"), g("randomizePrice", "0")]
    if g("orderType") == "PEG BENCH":
        fields += [g(name, "") for name in PEG_BENCH]
    fields += [0]
    fields += [
        g("trailStopPrice", ""),
        g("lmtPriceOffset", ""),
        g("cashQty", ""),
        g("dontUseAutoPriceForHedge", "0"),
        g("isOmsContainer", "0"),
        "",
        g("filledQuantity", ""),
        0,
        g("autoCancelParent", "0"),
        "",
        0,
        0,
        g("parentPermId", "0"),
        completed_time,
        status,
    ]
    if version >= 170:
        fields += [
            g(n, "")
            for n in (
                "minTradeQty",
                "minCompeteSize",
                "competeAgainstBestOffset",
                "midOffsetAtWhole",
                "midOffsetAtHalf",
            )
        ]
    return fields
