"""What a worker is computing right now, readable by the supervisor without a message.

    worker:      a pipeline step begins -> its symbol written, then ``seq`` made odd
                 the step ends (returns, raises) -> ``seq`` made even
    supervisor:  every watch tick, reads ``seq``: the same odd value for longer than
                 ``workers.step_timeout_s`` -> the worker is stuck on that symbol

A worker stuck in a strategy's endless loop (or a C call that never returns) reads no
message, so it cannot answer a heartbeat request; two words of shared memory, written only by
the worker, say what it is doing. The supervisor measures how long on its own clock: no clock
is compared across processes (a test's shifted clock may differ between them).
"""

from __future__ import annotations

from multiprocessing.context import BaseContext

SYMBOL_BYTES = 64


class Beat:
    def __init__(self, ctx: BaseContext) -> None:
        """``ctx``: the multiprocessing context the worker is spawned with."""
        self._seq = ctx.RawValue("q", 0)
        self._cycle = ctx.RawValue("q", 0)
        self._symbol = ctx.RawArray("c", SYMBOL_BYTES)

    def begin(self, symbol: str, cycle_id: int = 0) -> None:
        self._symbol.value = symbol.encode("utf-8", "replace")[: SYMBOL_BYTES - 1]
        self._cycle.value = cycle_id
        self._seq.value += 1  # odd: inside a step (symbol and cycle are written first)

    def end(self) -> None:
        self._seq.value += 1  # even: between steps

    def read(self) -> tuple[int, str | None]:
        """The step's sequence number, and its symbol while inside one (else None)."""
        seq = self._seq.value
        if seq % 2 == 0:
            return seq, None
        return seq, self._symbol.value.decode("utf-8", "replace")

    def cycle(self) -> int:
        """The cycle of the step last begun (read once a step is known stuck: it is still)."""
        return int(self._cycle.value)
