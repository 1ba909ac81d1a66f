"""The SQLite journal: what the bot decided and did, surviving restarts."""
