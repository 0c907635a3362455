"""What every command-line pipeline does before it imports TensorFlow: quiet native logs (and a Ctrl-C
while it imports ends with one line, not a traceback).

TensorFlow's C++ runtime writes its own lines to the process's stderr (oneDNN notes, "Could not find
cuda drivers", `cuInit` errors on machines without a GPU, absl's "All log messages before
absl::InitializeLog()" banner); `TF_CPP_MIN_LOG_LEVEL` does not silence the ones printed before absl
is initialised. Unless `--verbose` is given, `quiet_native_logs()` routes file descriptor 2 through a
filter that drops those lines and passes everything else (Python's warnings, tracebacks, our errors)
through unchanged. This module imports nothing of TensorFlow.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading

VERBOSE_FLAG = "--verbose"
# glog/absl lines: "I0000 00:00:1796218588.881057   14149 port.cc:153] ...", and TF's startup notes.
NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
    rb"|This TensorFlow binary is optimized to use available CPU instructions)")

_installed = False


def verbose_requested(argv: list[str] | None = None) -> bool:
    return VERBOSE_FLAG in (sys.argv[1:] if argv is None else argv)


def quiet_native_logs(argv: list[str] | None = None) -> bool:
    """Filters TensorFlow's native log lines out of stderr unless `--verbose` is in `argv` (default
    `sys.argv`); also keeps TensorFlow's Python INFO messages out of the log. Returns whether it
    filters. Call it before TensorFlow is imported."""
    global _installed
    _one_line_interrupts()
    if verbose_requested(argv):
        return False
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _installed:
        return True
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
        sys.stderr.flush()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no usable fd 2 (embedded interpreters): leave stderr alone
        return False
    _installed = True

    def forward():
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while True:
                chunk = source.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not NATIVE_LOG_LINE.match(line))
                if kept:
                    os.write(original, kept)
            if pending and not NATIVE_LOG_LINE.match(pending):
                os.write(original, pending)

    thread = threading.Thread(target=forward, name="tfbert-stderr-filter", daemon=True)
    thread.start()

    def restore():
        # Put the real stderr back (which closes the pipe's last writer) and let the filter drain.
        sys.stderr.flush()
        os.dup2(original, 2)
        thread.join(timeout=5)

    atexit.register(restore)
    return True


def _one_line_interrupts() -> None:
    """Ctrl-C before a pipeline's main catches it (while TensorFlow imports, a few seconds) prints one line,
    not the traceback through the importing modules; the interpreter still ends by SIGINT."""
    if getattr(sys.excepthook, "tfbert_one_line", False):
        return
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            print(f"\n{os.path.basename(sys.argv[0] or 'python')}: interrupted", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    hook.tfbert_one_line = True
    sys.excepthook = hook


def show_info_logs() -> None:
    """tfbert's INFO lines (what the data was read as, and the like) on stderr, as every pipeline shows them."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def run_pipeline(config_cls, run, argv: list[str] | None, description: str, prog: str) -> int:
    """The body of a training or search pipeline: flags (and `--config`) -> `config_cls`, then
    `run(config)`; a `TfbertError` (bad data, config, checkpoint, vocabulary...) is printed as one line
    `<prog>: error: <what and where>` and gives exit status 1. Ctrl-C (SIGINT) ends it with one line
    saying how to resume instead of a traceback through TensorFlow, still by SIGINT."""
    from tfbert.errors import TfbertError

    show_info_logs()
    config = config_cls.from_args(argv, description=description)
    try:
        run(config)
    except TfbertError as e:  # the message says where and what to do
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the backups are written whole; nothing to clean up
        print(f"\n{prog}: interrupted; run the same command to resume", file=sys.stderr)
        _quiet_interrupt_traceback()
        raise  # the interpreter then ends by SIGINT, so a shell loop around the command stops too
    return 0


def _quiet_interrupt_traceback() -> None:
    """An uncaught KeyboardInterrupt ends Python by SIGINT (what a shell needs to stop a loop), after
    `sys.excepthook` prints its traceback: the hook now skips that one traceback."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if not issubclass(kind, KeyboardInterrupt):
            previous(kind, value, traceback)

    sys.excepthook = hook
