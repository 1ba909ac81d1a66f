"""The command line: one module per verb (run, check, phases, report, reconcile, validate,
chaos; cli.py lists them)."""
