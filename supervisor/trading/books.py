"""The one place a position book is chosen: from what the execution gate says, once.

dry_run and whatif trade a paper book; live follows IBKR's orders, fills and positions. The
desk calls whichever it was given (``position_book.PositionBook``) and never asks which.
"""

from __future__ import annotations

from supervisor.trading.live_book import LivePositionBook
from supervisor.trading.paper_book import PaperPositions
from supervisor.trading.position_book import DeskSide, PositionBook


def book_for(desk: DeskSide) -> PositionBook:
    """The live book when the execution gate sends orders to IBKR, else the paper book."""
    if desk.executor.mode == "live":
        return LivePositionBook(desk)
    return PaperPositions(desk)
