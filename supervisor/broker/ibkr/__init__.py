"""The IBKR adapter: the only package that imports ib_insync (see broker.py for the layers)."""

from supervisor.broker.ibkr.broker import IBKRBroker

__all__ = ["IBKRBroker"]
