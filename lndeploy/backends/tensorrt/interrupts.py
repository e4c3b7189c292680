"""Ctrl-C and SIGTERM while TensorRT runs: held, then raised once TensorRT has returned.

TensorRT calls Python back (its logger, the progress monitor) on its own C++ stack. A signal handled
in such a callback raises KeyboardInterrupt there, which cannot unwind through C++: the process
aborts ("terminate called after throwing pybind11::error_already_set", exit 134) and leaves its temp
files. So while TensorRT runs, the signal is only recorded; the progress monitor cancels the build
(``IProgressMonitor.step_complete`` returning False), and the signal is delivered again, to the
handler that was there before, when TensorRT has returned.
"""

from __future__ import annotations

import contextlib
import signal
import threading

HELD = (signal.SIGINT, signal.SIGTERM)


class Pending:
    def __init__(self):
        self.signum = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def signals_held():
    """Yield a ``Pending`` that is true once a signal arrived; re-deliver it on the way out."""
    pending = Pending()
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield pending
        return

    def record(signum, frame):
        pending.signum = signum

    previous = {sig: signal.signal(sig, record) for sig in HELD}
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending.signum)
