"""One exception family for everything a user can act on.

Each class carries the process exit code the CLI maps it to (SPEC section 2): 1 parity failure,
2 bad input or usage, 3 backend or hardware not available here.
"""


class LndeployError(Exception):
    """Base of every error lndeploy raises on purpose. ``str(err)`` is one line a person can act on."""

    exit_code = 2


class BadInputError(LndeployError):
    """The model file, ONNX file, option or input given is wrong (exit 2)."""

    exit_code = 2


class ParityError(LndeployError):
    """A deployed artifact computes something else than its reference (exit 1)."""

    exit_code = 1


class UnavailableError(LndeployError):
    """The requested backend, runtime or hardware cannot run here (exit 3)."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by the CLI's handler so that cleanup (temp files) runs as for Ctrl-C. A
    ``KeyboardInterrupt`` so that everything that lets Ctrl-C through lets it through (exit 143)."""


def interrupt_in(err: BaseException | None) -> KeyboardInterrupt | None:
    """A KeyboardInterrupt (or ``Terminated``) anywhere in ``err``'s cause/context chain: libraries
    (torch's exporter) wrap a Ctrl-C in errors of their own, and it must stay a Ctrl-C."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
