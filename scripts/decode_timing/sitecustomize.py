"""Times every ``llama_decode`` of a process started with this directory on ``PYTHONPATH``.

``scripts/step_accounting.py`` puts it there for the herd server it starts (the runners inherit the
environment) and imports it itself for the raw loop. With ``HERD_DECODE_LOG`` naming a directory,
each process appends ``start end n_tokens n_outputs`` (perf_counter seconds) to
``decode.<pid>.log`` there, one line per call.
"""

import os

LOG_DIR = os.environ.get("HERD_DECODE_LOG")

if LOG_DIR:
    import time

    import llama_cpp

    _decode = llama_cpp.llama_decode
    # Open for the life of the process; line-buffered, so a stopped server's steps are on disk.
    _log = open(os.path.join(LOG_DIR, f"decode.{os.getpid()}.log"), "a", buffering=1)

    def _timed_decode(ctx, batch):
        started = time.perf_counter()
        rc = _decode(ctx, batch)
        ended = time.perf_counter()
        outputs = sum(1 for i in range(batch.n_tokens) if batch.logits[i])
        _log.write(f"{started:.6f} {ended:.6f} {batch.n_tokens} {outputs}\n")
        return rc

    llama_cpp.llama_decode = _timed_decode
