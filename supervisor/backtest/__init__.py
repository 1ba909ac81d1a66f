"""Backtests: the live cycle over historical 1-minute bars (data.py, market.py, pricing.py)."""
