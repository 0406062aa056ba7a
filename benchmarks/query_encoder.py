"""What one search query costs the int8 ONNX query encoder, and what onnxruntime options change it.

In-process, one thread, the same queries for every variant (benchmarks.search's synthetic
queries, ~11 word pieces), the variants interleaved over `--repeats` passes so that the machine's
load falls on all of them alike; thread CPU per query (what load inflates least) and the load
average are printed. Variants: the encoder as search uses it (tokenise, run, pool, normalise),
its session.run alone, session.run with other session options, and with `--fp32` the same model
exported without quantisation (fused fp32, into a temporary directory; needs torch, ~15 s).

    .venv/bin/python -m benchmarks.query_encoder [--queries 300] [--repeats 3] [--fp32]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.search import Corpus, load_avg
from embed.onnx_encoder import MODEL_FILE, TOKENIZER_FILE, OnnxEncoder, find_model


def session_options(tweak: Callable) -> object:
    """OnnxEncoder's options (one thread, sequential), then `tweak`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    tweak(options, onnxruntime)
    return options


TWEAKS: dict[str, Callable] = {
    "session.run, the encoder's options": lambda o, ort: None,
    "session.run, denormal as zero": lambda o, ort: o.add_session_config_entry("session.set_denormal_as_zero", "1"),
    "session.run, no memory pattern or arena": lambda o, ort: (setattr(o, "enable_mem_pattern", False),
                                                              setattr(o, "enable_cpu_mem_arena", False)),
    "session.run, optimisation EXTENDED": lambda o, ort: setattr(
        o, "graph_optimization_level", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    "session.run, optimisation BASIC": lambda o, ort: setattr(
        o, "graph_optimization_level", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    "session.run, no spinning": lambda o, ort: o.add_session_config_entry("session.intra_op.allow_spinning", "0"),
}


def export_fp32(into: Path) -> Path:
    """The fused fp32 graph embed.onnx_export quantises, kept as a model directory."""
    from embed import onnx_export

    source = onnx_export.source_model_path()
    onnx_export.export_fp32(source, into / "raw.onnx")
    onnx_export.fuse(into / "raw.onnx", into / MODEL_FILE)
    (into / "raw.onnx").unlink()
    shutil.copyfile(source / TOKENIZER_FILE, into / TOKENIZER_FILE)
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.query_encoder", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fp32", action="store_true", help="also an fp32 export of the same model (needs torch)")
    args = parser.parse_args(argv)
    import onnxruntime

    path = find_model(os.environ.get("BRIEFCAST_DATA_DIR", "data"))
    if path is None:
        raise SystemExit("no int8 export found: run `make install` or `make onnx`")
    encoder = OnnxEncoder(path, threads=1)
    queries = Corpus.make().queries(args.queries)
    feeds = [encoder._pad([encoder._tokenizer.encode(q).ids]) for q in queries]
    print(f"{path}, {len(queries)} queries, {np.mean([f[0].shape[1] for f in feeds]):.1f} word pieces on average; "
          f"load avg {load_avg()} at start")

    def run_with(session) -> Callable[[int], None]:
        return lambda i: session.run(None, {"input_ids": feeds[i][0], "attention_mask": feeds[i][1],
                                            "token_type_ids": np.zeros_like(feeds[i][0])})

    variants: dict[str, Callable[[int], None]] = {"the encoder (embed_batch of one query)":
                                                  lambda i: encoder.embed_batch([queries[i]])}
    for name, tweak in TWEAKS.items():
        session = onnxruntime.InferenceSession(str(path / MODEL_FILE), session_options(tweak),
                                               providers=["CPUExecutionProvider"])
        variants[name] = run_with(session)
    scratch = Path(tempfile.mkdtemp(prefix="briefcast-fp32-")) if args.fp32 else None
    try:
        if scratch:
            fp32 = OnnxEncoder(export_fp32(scratch), model_id="fp32", threads=1)
            variants["fp32 fused export (embed_batch)"] = lambda i: fp32.embed_batch([queries[i]])
        for call in variants.values():  # warm
            for i in range(min(20, len(queries))):
                call(i)
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, call in variants.items():
                started = time.thread_time()
                for i in range(len(queries)):
                    call(i)
                results[name].append((time.thread_time() - started) / len(queries) * 1000)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'variant':<42}thread CPU ms per query, each pass")
    for name, values in results.items():
        print(f"{name:<42}" + "  ".join(f"{v:.2f}" for v in values))
    print(f"load avg {load_avg()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
