"""Exit codes of ``python -m supervisor``, in one place."""

OK = 0  # finished, or stopped cleanly by a signal
FAILED = 1  # an internal error (a bug): the log has the traceback
USAGE = 2  # bad command line or settings file
CANNOT_CONNECT = 3  # the broker could not be reached
HALTED = 4  # stopped by the risk engine (kill switch) or repeated worker boot failures
STORAGE = 5  # the journal could not be written (disk full, I/O error): stopped before any
# new order; everything committed is kept, and the next start resumes from it

NAMES = {
    OK: "stopped",
    FAILED: "crashed",
    USAGE: "refused to start",
    CANNOT_CONNECT: "cannot connect",
    HALTED: "halted",
    STORAGE: "journal failed",
}
