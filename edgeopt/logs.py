"""Hide TensorFlow's native log lines from a command's output (``edgeopt`` without ``--verbose``).

TensorFlow 2.21 writes absl log lines from C++ straight to file descriptor 2 ("I0000 ... port.cc:153] oneDNN
custom operations are on", "E0000 ... failed call to cuInit" on machines without a GPU, "WARNING: All log
messages before absl::InitializeLog() ..."), and ``TF_CPP_MIN_LOG_LEVEL`` no longer silences them (measured:
the same lines with it set to 3, in the environment or in ``os.environ``). :func:`hide_native_logs` puts a pipe
on descriptor 2 and a thread that forwards every line except those, so Python's own messages and tracebacks
still reach the terminal.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

# absl's line prefix: severity, MMDD, time, thread id, file:line]  -- and absl's one-off notice before InitializeLog
# plus the TFLite converter's and interpreter's own prints ("fully_quantize: 0, inference_type: 6, ...",
# "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
NATIVE_LOG_LINE = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-/]+:\d+\]|WARNING: All log messages before absl::InitializeLog"
                             rb"|INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite)|fully_quantize: \d)")


def is_native_log_line(line: bytes) -> bool:
    return NATIVE_LOG_LINE.match(line) is not None


def hide_native_logs() -> None:
    """Drop TensorFlow's native log lines and its Python-side warnings for the rest of the process."""
    for name in ("tensorflow", "absl", "tensorflow_model_optimization"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # still honoured by the parts of TensorFlow that read it
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            for line in iter(pipe.readline, b""):
                if not is_native_log_line(line):
                    os.write(terminal, line)

    thread = threading.Thread(target=forward, name="edgeopt-stderr", daemon=True)
    thread.start()

    def restore():  # at exit: give descriptor 2 back, let the thread drain the pipe, then stop
        sys.stderr.flush()
        os.dup2(terminal, 2)
        thread.join(timeout=2)

    atexit.register(restore)
