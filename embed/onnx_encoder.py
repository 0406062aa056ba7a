"""all-MiniLM-L6-v2 as a dynamically quantised int8 ONNX model, on plain onnxruntime + tokenizers.

The same model as the "minilm" encoder without torch on the path: ~4x smaller on disk and faster on
CPU. Its vectors differ slightly from the torch route's (cosine ~0.99), so it records its own
model id and switching between the two rebuilds the index. For *queries* it is declared
equivalent to the torch route (``query_equivalents``): a query encoded here may search an index of
the torch route's vectors, which is how `briefcast search` answers without importing torch
(retrieval on the pinned set is the same: docs/benchmarks.md). Only an export that
embed.onnx_export made of all-MiniLM-L6-v2 (its briefcast-onnx.json says so) is declared so.

Where the export is: ``make onnx`` writes ``<data_dir>/models/minilm-onnx-int8``; ``make install``
writes one into the venv (``<sys.prefix>/share/briefcast/models/minilm-onnx-int8``), found when
the data directory has none.

The model directory is made by ``python -m embed.onnx_export DIR`` (``make onnx``) and holds
``model.onnx``, ``tokenizer.json`` and ``briefcast-onnx.json`` (what was exported, and how).
Nothing here downloads anything; onnxruntime and tokenizers load only when an encoder is built.

What sentence-transformers does for this model, done here in numpy: truncate to 256 word pieces,
mean-pool the last hidden state over the attention mask (sum / max(count, 1e-9)), L2-normalise.

Batches and determinism: dynamic quantisation picks one activation scale per tensor, that is per
batch, so with several texts in one model call a text's vector depends on its neighbours in the
batch (cosine ~0.99 between the same passage alone and in a batch of 32, as far apart as int8 is
from fp32). By default every text therefore goes through the model on its own: a text has one
vector, whoever it is embedded with, and a query embedded alone matches its indexed twin exactly.
``batch_size`` > 1 trades that for throughput where the model is used in bulk.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embed.encoder import MINILM_MODEL_ID, Encoder, EncoderError, normalise, register

MODEL_ID = f"{MINILM_MODEL_ID}#onnx-int8"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "briefcast-onnx.json"
DEFAULT_SUBDIR = Path("models") / "minilm-onnx-int8"
MAX_TOKENS = 256  # sentence_bert_config.json of all-MiniLM-L6-v2: max_seq_length


def default_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / DEFAULT_SUBDIR


def installed_path(prefix: str | Path | None = None) -> Path:
    """Where `make install` exports the model: inside the environment, beside the packages it was
    made from (a `make clean-data` keeps it; a new venv makes a new one)."""
    return Path(prefix or sys.prefix) / "share" / "briefcast" / DEFAULT_SUBDIR


def find_model(data_dir: str | Path, prefix: str | Path | None = None) -> Path | None:
    """The export to use: the data directory's (`make onnx`), else the installed one, else None."""
    for path in (default_path(data_dir), installed_path(prefix)):
        if (path / MODEL_FILE).is_file():
            return path
    return None


class OnnxEncoder(Encoder):
    """A BERT-style sentence encoder exported by embed.onnx_export: mean pooling, normalised rows."""

    def __init__(self, path: str | Path, model_id: str = MODEL_ID, batch_size: int = 1,
                 threads: int | None = None, max_tokens: int | None = None) -> None:
        path = Path(path)
        missing = [name for name in (MODEL_FILE, TOKENIZER_FILE) if not (path / name).is_file()]
        if missing:
            raise EncoderError(f"no ONNX model at {path} ({', '.join(missing)} missing): run `make onnx` "
                               f"(or `python -m embed.onnx_export {path}`) to create it")
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EncoderError(f"the onnx encoder needs the packages onnxruntime and tokenizers ({exc.name} "
                               "is not installed)") from None
        if batch_size < 1:
            raise EncoderError(f"batch_size must be at least 1, not {batch_size}")

        meta = _read_meta(path)
        self.model_id = model_id
        # Queries may search the torch route's index only from our own export of that model.
        if model_id == MODEL_ID and meta.get("model_id") == MODEL_ID:
            self.query_equivalents = frozenset({MINILM_MODEL_ID})
        self.batch_size = batch_size
        self.max_tokens = int(max_tokens or meta.get("max_seq_length") or MAX_TOKENS)

        self._tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        self._tokenizer.no_padding()  # tokenizer.json pads to a fixed 128: we pad each batch ourselves
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._pad_id = self._tokenizer.token_to_id("[PAD]") or 0

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one per physical core
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        try:
            self._session = onnxruntime.InferenceSession(str(path / MODEL_FILE), options,
                                                         providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a corrupt or foreign file
            raise EncoderError(f"cannot load {path / MODEL_FILE}: {exc}; recreate it with `make onnx`") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self._inputs:
            raise EncoderError(f"{path / MODEL_FILE} does not take input_ids and attention_mask "
                               f"(inputs: {sorted(self._inputs)}); recreate it with `make onnx`")
        self._output = self._session.get_outputs()[0].name
        self.dim = int(meta.get("dim") or self._session.get_outputs()[0].shape[-1])

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        # Length-sorted batches waste little on padding (sentence-transformers sorts the same way).
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids), reverse=True)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids, mask = self._pad([encodings[i].ids for i in rows])
            out[rows] = _mean_pool(self._run(ids, mask), mask)
        return normalise(out)

    def _pad(self, token_ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(t) for t in token_ids)
        ids = np.full((len(token_ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for row, tokens in enumerate(token_ids):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return self._session.run([self._output], feed)[0]


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling(mean): masked sum over tokens / max(token count, 1e-9)."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden.astype(np.float32) * weights).sum(axis=1)
    return summed / np.maximum(weights.sum(axis=1), 1e-9)


def _read_meta(path: Path) -> dict:
    try:
        return json.loads((path / META_FILE).read_text())
    except FileNotFoundError:
        return {}  # a hand-made export: fall back to the model's own shapes
    except (OSError, ValueError) as exc:
        raise EncoderError(f"unreadable {path / META_FILE}: {exc}; recreate the model with `make onnx`") from exc


@register("onnx")
def onnx_minilm(path: str | Path | None = None, data_dir: str | Path | None = None, batch_size: int = 1,
                threads: int | None = None) -> Encoder:
    """all-MiniLM-L6-v2, int8 ONNX, from `path` or else `<data_dir>/models/minilm-onnx-int8`."""
    if path is None:
        if data_dir is None:
            raise EncoderError("the onnx encoder needs path= (the model directory) or data_dir=")
        path = default_path(data_dir)
    return OnnxEncoder(path, batch_size=batch_size, threads=threads)
