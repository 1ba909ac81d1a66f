"""Exit codes of ``python -m supervisor``, in one place."""

OK = 0  # finished, or stopped cleanly by a signal
FAILED = 1  # an internal error (a bug): the log has the traceback
USAGE = 2  # bad command line or settings file
CANNOT_CONNECT = 3  # the broker could not be reached
HALTED = 4  # stopped by the risk engine (kill switch) or repeated worker boot failures
