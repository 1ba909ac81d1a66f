"""Exit codes of ``python -m supervisor``, in one place."""

OK = 0  # finished, or stopped cleanly by a signal
FAILED = 1  # an internal error (a bug): the log has the traceback
USAGE = 2  # bad command line or settings file
CANNOT_CONNECT = 3  # the broker could not be reached
# the workers failed: not all ready within workers.start_timeout_s of the start, or more
# deaths within a minute than workers.max_respawns_per_minute. Not the kill switch: a tripped
# daily loss limit stops new entries for the rest of the day and the bot runs on
HALTED = 4
STORAGE = 5  # the journal could not be written (disk full, I/O error): stopped before any
# new order; everything committed is kept, and the next start resumes from it
CHECKS_FAILED = 6  # doctor: the gateway answered, but a check failed (its line says the fix)

NAMES = {
    OK: "stopped",
    FAILED: "crashed",
    USAGE: "refused to start",
    CANNOT_CONNECT: "cannot connect",
    HALTED: "halted",
    STORAGE: "journal failed",
    CHECKS_FAILED: "checks failed",
}
