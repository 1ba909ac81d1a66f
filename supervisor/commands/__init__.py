"""The command line: one module per verb (run, check, phases, report, validate)."""
