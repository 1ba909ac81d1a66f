"""The running bot: the supervisor loop, the worker pool, cycles, request serving, clocks."""
