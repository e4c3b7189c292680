"""The ``lndeploy`` command: a thin click layer over the library.

Subcommands live one per module and are imported only when invoked, so ``lndeploy --help`` imports
neither torch nor onnxruntime. Every ``LndeployError`` becomes one line on stderr and its exit code
(SPEC section 2); anything else is an internal error (exit 4) whose traceback ``--debug`` shows.
Ctrl-C is exit 130 and SIGTERM 143 (128 + the signal), wherever they land, temp files removed.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

COMMANDS = {
    "export": ("lndeploy.cli.export_cmd", "PyTorch model file -> ONNX, LayerNorm as one node."),
    "check": ("lndeploy.cli.check_cmd", "Parity of a deployed artifact with its PyTorch model."),
    "inspect": ("lndeploy.cli.inspect_cmd", "What an ONNX file or engine holds: I/O, LN nodes, precision."),
    "fuse": ("lndeploy.cli.fuse_cmd", "Rewrite primitive-op LayerNorm in an ONNX file into one node."),
    "build": ("lndeploy.cli.build_cmd", "ONNX -> TensorRT engine (TensorRT or TensorRT-RTX)."),
    "bench": ("lndeploy.cli.bench_cmd", "Latency and throughput per backend, PyTorch as baseline."),
    "package": ("lndeploy.cli.package_cmd", "Triton Inference Server model repository from artifacts."),
    "serve": ("lndeploy.cli.serve_cmd", "A local Triton server (KServe v2 HTTP/gRPC) over artifacts."),
}
INTERNAL_ERROR = 4
INTERRUPTED = 128 + signal.SIGINT
TERMINATED = 128 + signal.SIGTERM


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, short_help = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            return _not_built(name)
        return module.command

    def format_commands(self, ctx, formatter):
        # from the table above, so --help imports no command module
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _not_built(name):
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def missing(args):
        from lndeploy.errors import UnavailableError

        raise UnavailableError(f"'lndeploy {name}' is not available in this version")

    return missing


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and the exporter's own output.")
@click.version_option(package_name="lndeploy")
@click.pass_context
def cli(ctx, debug):
    """Deploy PyTorch models with LayerNorm to ONNX Runtime and TensorRT, with parity proven.

    \b
    Example:
      lndeploy export models/fnn.py -o fnn.onnx
      lndeploy check models/fnn.py --onnx fnn.onnx --report report.json

    Exit codes: 0 ok, 1 parity failure, 2 bad input or usage, 3 backend or hardware not available,
    4 internal error. Loading a model file executes its code.
    """
    ctx.obj = {"debug": debug}


def main(argv=None):
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    previous = None
    try:  # from the first statement on, so that a Ctrl-C anywhere in here is 130
        previous = _on_sigterm_raise()
        cli.main(args=argv, prog_name="lndeploy", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as err:
        sys.exit(_report_click(err, debug))
    except click.exceptions.Abort as err:  # click's form of a KeyboardInterrupt
        sys.exit(_interrupted(err.__cause__))
    except KeyboardInterrupt as err:
        sys.exit(_interrupted(err))
    except Exception as err:  # noqa: BLE001 - the one place that turns errors into exit codes
        sys.exit(_report(err, debug))
    finally:
        _restore_sigterm(previous)
    sys.exit(0)


def _on_sigterm_raise():
    """SIGTERM raises ``Terminated`` (a KeyboardInterrupt), so ``finally`` blocks remove temp files.
    Only in the main thread (signal handlers can only be set there), e.g. not under a test runner's
    worker thread."""
    from lndeploy.errors import Terminated

    def raise_terminated(signum, frame):
        raise Terminated("terminated")

    try:
        return signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(err) -> int:
    from lndeploy.errors import Terminated

    terminated = isinstance(err, Terminated)
    click.echo("lndeploy: terminated" if terminated else "lndeploy: interrupted", err=True)
    return TERMINATED if terminated else INTERRUPTED


def _report_click(err: click.ClickException, debug: bool) -> int:
    """A usage error is one line too (SPEC: exit 2, one line naming the problem), with where to find
    help; click's own four-line form (usage, hint, blank, error) only with --debug. ``lndeploy`` with
    no command still prints the help."""
    no_args_help = getattr(click.exceptions, "NoArgsIsHelpError", ())
    if debug or (no_args_help and isinstance(err, no_args_help)):
        err.show()
        return err.exit_code
    ctx = getattr(err, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(err.format_message().split())  # click may wrap long messages
    click.echo(f"lndeploy: error: {message}{hint}", err=True)
    return err.exit_code


def _report(err: Exception, debug: bool) -> int:
    from lndeploy.errors import LndeployError, interrupt_in

    if interrupt_in(err) is not None:  # a library's error wrapping a Ctrl-C or SIGTERM
        return _interrupted(interrupt_in(err))
    if debug:
        import traceback

        traceback.print_exc()
    if isinstance(err, LndeployError):
        click.echo(f"lndeploy: error: {err}", err=True)
        return err.exit_code
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    click.echo(f"lndeploy: internal error: {type(err).__name__}: {text} (run with --debug for the traceback)",
               err=True)
    return INTERNAL_ERROR
