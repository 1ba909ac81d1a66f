"""Request handlers by family; ``all_handlers()`` maps message id -> handler."""

from __future__ import annotations

from tools.gateway_sim.handlers import account, connect, contracts, history, marketdata, orders
from tools.gateway_sim.session import Handler


def all_handlers() -> dict[int, Handler]:
    table: dict[int, Handler] = {}
    for module in (connect, account, contracts, marketdata, history, orders):
        overlap = table.keys() & module.HANDLERS.keys()
        if overlap:
            raise RuntimeError(f"message ids handled twice: {sorted(overlap)}")
        table.update(module.HANDLERS)
    return table
