"""The request layer: one request per reqId through ib_insync's own wrapper futures.

Every wait is bounded; every way out (answer, error code, timeout, lost connection) removes
what ib_insync filed under the reqId, so nothing is left behind. The gateway's error codes
become ``IBKRRequestError`` with the code, a dropped socket ``ConnectionLost``. Also here:
fire-and-forget sends (cancels) that still pass the governor, and per-key locks so one
lookup runs once while its callers wait.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from supervisor.broker.base import ConnectionLost, SymbolDataError
from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.client import ibi
from supervisor.broker.ibkr.link import Link

T = TypeVar("T")


class IBKRRequestError(SymbolDataError):
    """A request the gateway answered with an error code (200, 354, 162 ...)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def request_error(what: str, exc: ibi.RequestError) -> IBKRRequestError:
    """The gateway's error on a request of ours, named by what was asked, with the setting
    to change when one would help (errors.hint)."""
    text = f"{what}: {errors.describe(exc.code, exc.message)}"
    hint = errors.hint(exc.code)
    return IBKRRequestError(f"{text} ({hint})" if hint else text, exc.code)


class Requests:
    """Bounded requests over one link; see the module docstring."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._locks: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def lock_for(self, key: Hashable) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def forget(self, req_id: int) -> None:
        wrapper = self._link.ib.wrapper
        wrapper._futures.pop(req_id, None)
        wrapper._results.pop(req_id, None)
        wrapper._reqId2Contract.pop(req_id, None)
        self._link.unwatch(req_id)

    async def request(
        self,
        what: str,
        send: Callable[[int], None],
        timeout_s: float,
        *,
        contract: Any = None,
        on_timeout: Callable[[int], object] | None = None,
    ) -> Any:
        """Send one request through the wrapper's future for its reqId; bounded, cleaned up."""
        link = self._link
        await link.pace(1)
        req_id = link.new_req_id()
        future = link.ib.wrapper.startReq(req_id, contract)
        link.watch(req_id)
        try:
            send(req_id)
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            if on_timeout is not None:
                on_timeout(req_id)
            raise SymbolDataError(f"{what}: no answer within {timeout_s:g}s") from None
        except ibi.RequestError as exc:
            raise request_error(what, exc) from None
        except ConnectionError:
            raise ConnectionLost(f"{what}: connection lost") from None
        finally:
            self.forget(req_id)

    async def paced_send(self, send: Callable[[], None]) -> None:
        """Fire-and-forget messages (cancels) pass the governor and wait while the link holds
        writes for a probe, like every other write: a silent gateway must not find them
        queued in its socket. On a lost link there is nothing to cancel (the gateway drops a
        connection's market-data requests with it)."""
        try:
            await self._link.pace(1)
        except ConnectionLost:
            return
        if self._link.ib.isConnected():
            send()

    def stats(self) -> dict[str, float]:
        wrapper = self._link.ib.wrapper
        return {
            "pending_requests": float(len(wrapper._futures)),
            "wrapper_results": float(len(getattr(wrapper, "_results", {}))),
        }


async def listed(what: str, listing: Awaitable[T], timeout_s: float) -> T:
    """A library call that lists account state (open orders, executions, completed orders),
    bounded; a socket dropped under it is ``ConnectionLost`` like any request's (a bare
    ConnectionError escaped the cycle's handling and stopped a live bot)."""
    try:
        return await asyncio.wait_for(listing, timeout_s)
    except ConnectionError:
        raise ConnectionLost(f"{what}: connection lost") from None
