"""Watching the bot: metrics, alerts, logging and the soak analysis."""
