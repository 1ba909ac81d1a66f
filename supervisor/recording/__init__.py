"""The flight recorder: every broker answer of a run, in Parquet files a replay reads back."""
