"""A progress display for engine builds, fed by TensorRT's ``IProgressMonitor``.

On a terminal, one status line is redrawn with the phase path and step counts; elsewhere (CI logs)
each top-level phase prints one line when it finishes, with its duration. Both go to stderr, so a
script reading stdout is not disturbed. Builds of the small zoo models take well under a second;
real models take minutes, which is when the display matters.
"""

from __future__ import annotations

import sys
import time


def make_monitor(trt, stream=None, show: bool = True, cancelled=lambda: False):
    """An ``IProgressMonitor`` for the given TensorRT module, or None when it has none. ``show``:
    draw progress; ``cancelled()``: true when the build is to stop (a held Ctrl-C)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()

    class Monitor(base):
        def __init__(self):
            base.__init__(self)
            self.phases = {}  # name -> [parent, steps, done, start time]
            self.order = []

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.phases[phase_name] = [parent_phase, num_steps, 0, time.perf_counter()]
            self.order.append(phase_name)
            self._draw()

        def step_complete(self, phase_name, step):
            if phase_name in self.phases:
                self.phases[phase_name][2] = step + 1
            self._draw()
            return not cancelled()  # False cancels the build

        def phase_finish(self, phase_name):
            parent, _steps, _done, start = self.phases.pop(phase_name, [None, 0, 0, time.perf_counter()])
            if phase_name in self.order:
                self.order.remove(phase_name)
            if show and parent is None and not tty:
                _write(stream, f"[lndeploy build] {phase_name}: {time.perf_counter() - start:.1f} s\n")
            self._draw()

        def _draw(self):
            if not (show and tty):
                return
            path = " > ".join(f"{n} {p[2]}/{p[1]}" for n, p in ((n, self.phases[n]) for n in self.order))
            _write(stream, "\r\033[K" + (f"[lndeploy build] {path}"[:160] if path else ""))

    return Monitor()


def _write(stream, text: str) -> None:
    try:  # a display must never break a build (TensorRT calls this from its own threads)
        stream.write(text)
        stream.flush()
    except Exception:  # noqa: BLE001
        pass
