"""CTranslate2 in a process of its own, for bench_e2e.py (the `ct2` / `ct2-int8` engines).

Why: CTranslate2 ships its own OpenMP runtime (ctranslate2.libs/libgomp-*.so) beside torch's, and with both
running in one process each slows the other on the 2-core Xeon (bench/RESULTS.md: torch engines 10-35% faster
with no CTranslate2 in the process, ORT unchanged; CTranslate2 slower once torch has run). Every engine in its
own runtime is the comparison users see; the parent still interleaves the rounds and times each call (the
pipe round trip adds ~0.1 ms to calls of 20-400 ms).

Protocol, pickles over stdin / stdout: ("inputs", name, seqs) stores a workload's token-id lists; ("run",
name) runs one forward; ("output", name) runs one and returns last_hidden_state as float32. Each reply is
("ok", value) or ("error", message).
"""

from __future__ import annotations

import os
import pickle
import sys


def main() -> None:
    path, compute_type, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    replies = os.fdopen(
        os.dup(1), "wb"
    )  # the protocol's channel; anything the libraries print goes to stderr
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    import numpy as np

    try:
        import ctranslate2

        encoder = ctranslate2.Encoder(
            path, device="cpu", compute_type=compute_type, intra_threads=threads, inter_threads=1
        )
        pickle.dump(("ok", ctranslate2.__version__), replies)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which marks the engine failed
        pickle.dump(("error", f"{type(e).__name__}: {e}"), replies)
        return
    finally:
        replies.flush()
    seqs: dict[str, list] = {}
    while True:
        try:
            msg = pickle.load(requests)
        except EOFError:
            return
        try:
            op, name = msg[0], msg[1]
            if op == "inputs":
                seqs[name], reply = msg[2], None
            elif op == "run":
                encoder.forward_batch(seqs[name])
                reply = None
            elif op == "output":
                reply = np.asarray(encoder.forward_batch(seqs[name]).last_hidden_state, dtype=np.float32)
            else:
                raise ValueError(f"unknown request {op!r}")
            pickle.dump(("ok", reply), replies)
        except Exception as e:  # noqa: BLE001
            pickle.dump(("error", f"{type(e).__name__}: {e}"), replies)
        replies.flush()


if __name__ == "__main__":
    main()
