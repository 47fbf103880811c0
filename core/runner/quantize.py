"""llama.cpp's quantizer as its own process: ``python -m herd.core.runner.quantize --input … --output … --type …``.

Core runs this in a child process, as it runs the runner, so that a llama.cpp abort on a hostile or
unusual GGUF ends this process and never the server. Progress goes to stdout as one JSON object a line,
``{"tensor": 42, "tensors": 200}``, parsed from the ``[  42/ 200]`` lines llama.cpp logs per tensor;
llama.cpp's own narration goes to stderr, which core only logs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import llama_cpp

_TENSOR_LINE = re.compile(rb"\[\s*(\d+)/\s*(\d+)\]")


def ftype_of(type_name: str) -> int:
    """The ``llama_ftype`` for a canonical type name such as ``Q4_K_M`` or ``F32``; raises ValueError."""
    constant = "LLAMA_FTYPE_ALL_F32" if type_name == "F32" else f"LLAMA_FTYPE_MOSTLY_{type_name}"
    ftype = getattr(llama_cpp, constant, None)
    if not isinstance(ftype, int):
        raise ValueError(f"llama.cpp has no quantization type {type_name}")
    return ftype


def tensor_progress(log_text: bytes) -> tuple[int, int] | None:
    """(tensor number, tensor count) from a llama.cpp quantizer log line, or None for any other line."""
    match = _TENSOR_LINE.match(log_text.lstrip())
    return (int(match.group(1)), int(match.group(2))) if match else None


@llama_cpp.llama_log_callback
def _report_llama_log(_level: int, text: bytes, _user_data) -> None:
    progress = tensor_progress(text)
    if progress is not None:
        print(json.dumps({"tensor": progress[0], "tensors": progress[1]}), flush=True)
    sys.stderr.write(text.decode("utf-8", "replace"))


def quantize(input_path: str, output_path: str, type_name: str, threads: int) -> int:
    """Writes ``input_path`` quantized to ``type_name`` at ``output_path``; returns llama.cpp's status (0: done)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_of(type_name)
    params.nthread = threads
    llama_cpp.llama_log_set(_report_llama_log, None)
    llama_cpp.llama_backend_init()
    return llama_cpp.llama_model_quantize(input_path.encode(), output_path.encode(), params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="the F32, F16 or BF16 GGUF to quantize")
    parser.add_argument("--output", required=True, help="where to write the quantized GGUF")
    parser.add_argument("--type", required=True, help="the target type, e.g. Q4_K_M, Q8_0")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    try:
        status = quantize(args.input, args.output, args.type, args.threads)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if status != 0:
        print(f"llama_model_quantize returned {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
