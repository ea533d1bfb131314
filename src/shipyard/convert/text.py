"""Text in for small transformer models: a wordpiece (BERT) tokenizer as ONNX operators in front of the
model, so that one graph takes sentences and gives class scores; and the sentences conversions check on.

The tokenizer is onnxruntime-extensions' BertTokenizer (domain ai.onnx.contrib), which the server and
the check register with every session of a model that names that domain (shipyard/customops.py). It
tokenizes one string per run, so the graph runs it in a Loop over the batch and pads each row to
`max_length`. `wordpiece` is the same tokenization in Python: the check compares the graph's ids with
it, then the composed model's outputs with the model's own on those ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from shipyard.convert.check import (
    GENERATED,
    USER_DATA,
    Array,
    Converted,
    detect_scores,
    first_line,
    real_inputs,
    require_close,
    run_onnx,
    signature_of,
)
from shipyard.convert.wordpiece import check_sentences, read_vocab, wordpiece
from shipyard.customops import DOMAIN
from shipyard.errors import ConversionFailed, InvalidInput, NotFound

INPUT_NAME = "text"
DEFAULT_MAX_LENGTH = 64
CHECK_ROWS = 16
MIN_OPSET = 13  # Unsqueeze, Squeeze and Pad with their axes and pads as inputs
IDS_NAMES = ("input_ids", "ids", "tokens", "token_ids")
MASK_NAMES = ("attention_mask", "input_mask", "mask")
TYPE_NAMES = ("token_type_ids", "segment_ids")
_INTEGER = frozenset({TensorProto.INT32, TensorProto.INT64})
_PREFIX = "tokenizer/"


class _Composition:
    """A model and a vocabulary, checked to fit, and the model with the tokenizer in front."""

    def __init__(
        self,
        model_bytes: bytes,
        vocab: Sequence[str] | str | Path,
        max_length: int | None,
        lowercase: bool,
        input_name: str,
    ) -> None:
        self.tokens = read_vocab(vocab)
        self.model = _load(model_bytes)
        self.feeds = _feeds(self.model)
        self.length = _max_length(max_length, self.feeds)
        composed = _compose(self.model, self.feeds, self.tokens, self.length, lowercase, input_name)
        self.composed = bytes(composed.SerializeToString())


@dataclass(frozen=True)
class _Feeds:
    """Which of the model's inputs take the ids, the attention mask and the token types."""

    ids: onnx.ValueInfoProto
    mask: onnx.ValueInfoProto | None
    types: onnx.ValueInfoProto | None
    length: int | None  # the sequence axis when the model fixes it


def with_tokenizer(
    model_onnx_bytes: bytes,
    vocab: Sequence[str] | str | Path,
    *,
    max_length: int | None = None,
    lowercase: bool = True,
    input_name: str = INPUT_NAME,
) -> bytes:
    """The model with a wordpiece tokenizer in front: one input `input_name`, strings [batch, 1], one
    sentence a row; the model's outputs unchanged.

    The model's token-id input (`input_ids`, or its only integer input) gets the ids of
    ``[CLS] pieces [SEP]``, truncated and then padded with [PAD] to `max_length` (by default the
    model's fixed sequence length, else 64); `attention_mask` (1 for tokens, 0 for padding) and
    `token_type_ids` (zeros) where the model takes them, cast to the types it declares. With
    `lowercase`, text is lowercased and its accents stripped, as in BERT's uncased models.

    What it does not do: pad to the longest row of a batch (every row is `max_length` long, so a row's
    answer never depends on the rows batched with it, at the price of computing on padding); sentence
    pairs (the op's second input is the pair's second sentence, not a batch); and match Hugging
    Face's tokenizer on every word: a word whose end is not in the vocabulary gives the pieces found
    before it and one [UNK] (Hugging Face gives a single [UNK] for the whole word).
    """
    return _Composition(model_onnx_bytes, vocab, max_length, lowercase, input_name).composed


def from_onnx(
    source: bytes | str | Path,
    vocab: Sequence[str] | str | Path,
    *,
    max_length: int | None = None,
    lowercase: bool = True,
    sample: Sequence[str] | None = None,
    tolerance: float = 1e-4,
) -> Converted:
    """`with_tokenizer` on an ONNX model, checked: on `sample` sentences (or ones made from the
    vocabulary) the graph's ids must equal `wordpiece`'s, and the composed model's outputs the model's
    own outputs on those ids."""
    if not isinstance(source, bytes):
        if not Path(source).is_file():
            raise NotFound(f"no such file: {source}")
        source = Path(source).read_bytes()
    made = _Composition(source, vocab, max_length, lowercase, INPUT_NAME)
    tokens, length = made.tokens, made.length
    if sample is None:
        sentences, source_kind = check_sentences(_words(tokens)), GENERATED
    else:
        sentences, source_kind = [str(s) for s in sample], USER_DATA
        if not sentences:
            raise ConversionFailed("sample must hold at least one sentence")
    text = np.empty((len(sentences), 1), dtype=object)
    text[:, 0] = sentences
    index = {token: i for i, token in enumerate(tokens)}
    ids = np.array([_padded(wordpiece(s, index, lowercase, length), index, length) for s in sentences])
    opset, ir_version = _opset(made.model), made.model.ir_version
    tokenizer = tokenizer_model(
        tokens, max_length=length, lowercase=lowercase, opset=opset, ir_version=ir_version
    )
    graph_ids = run_onnx(tokenizer, {INPUT_NAME: text})[0]
    for sentence, want, got in zip(sentences, ids, graph_ids, strict=True):
        if not np.array_equal(want, got):
            raise ConversionFailed(
                f"the tokenizer op and shipyard's wordpiece split {sentence!r} differently: "
                f"{got.tolist()} against {want.tolist()}"
            )
    expected = run_onnx(source, _model_inputs(made.feeds, ids, index["[PAD]"]))
    actual = run_onnx(made.composed, {INPUT_NAME: text})
    names = [out.name for out in made.model.graph.output]
    check = require_close(
        dict(zip(names, expected, strict=True)), actual, tolerance, len(sentences), source_kind
    )
    composed_model = onnx.load_model_from_string(made.composed)
    signature = signature_of(composed_model)
    scores = detect_scores(signature, dict(zip(names, actual, strict=True)))
    return Converted(
        onnx_bytes=made.composed,
        signature=signature_of(composed_model, scores),
        framework="onnx",
        check=check,
        labels=None,
    )


def tokenizer_model(
    vocab: Sequence[str] | str | Path,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    lowercase: bool = True,
    opset: int = 17,
    ir_version: int = 8,
) -> bytes:
    """The tokenizer alone, as `with_tokenizer` puts it in front of a model: strings [batch, 1] in,
    `input_ids` and `attention_mask` [batch, max_length] (INT64) out."""
    tokens = read_vocab(vocab)
    nodes, ids, mask = _tokenizer_nodes(tokens, _max_length(max_length, None), lowercase, INPUT_NAME)
    nodes += [helper.make_node("Identity", [ids], ["input_ids"])]
    nodes += [helper.make_node("Identity", [mask], ["attention_mask"])]
    graph = helper.make_graph(
        nodes,
        "tokenizer",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.STRING, ["batch", 1])],
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", max_length])
            for name in ("input_ids", "attention_mask")
        ],
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)]
    return bytes(helper.make_model(graph, opset_imports=opsets, ir_version=ir_version).SerializeToString())


def _padded(ids: list[int], index: Mapping[str, int], length: int) -> list[int]:
    return ids + [index["[PAD]"]] * (length - len(ids))


def _words(tokens: Sequence[str]) -> list[str]:
    """Whole words of the vocabulary, and some with a piece after them, for check sentences."""
    words = [t for t in tokens if not (t.startswith("[") and t.endswith("]")) and not t.startswith("##")]
    alpha = [w for w in words if w.isalpha()]
    suffixes = [t[2:] for t in tokens if t.startswith("##") and len(t) > 2]
    joined = [alpha[i % len(alpha)] + suffix for i, suffix in enumerate(suffixes)] if alpha else []
    return words + joined


def _model_inputs(feeds: _Feeds, ids: Array, pad: int) -> dict[str, Array]:
    inputs = {feeds.ids.name: ids.astype(_numpy_type(feeds.ids))}
    if feeds.mask is not None:
        inputs[feeds.mask.name] = (ids != pad).astype(_numpy_type(feeds.mask))
    if feeds.types is not None:
        inputs[feeds.types.name] = np.zeros_like(ids).astype(_numpy_type(feeds.types))
    return inputs


def _numpy_type(value: onnx.ValueInfoProto) -> np.dtype[Any]:
    return np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))


def _load(model_bytes: bytes) -> onnx.ModelProto:
    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as exc:  # protobuf's DecodeError, whose module has no type stubs
        raise ConversionFailed(f"the model is not a valid ONNX model: {first_line(exc)}") from exc
    if not model.graph.node and not model.graph.output:
        raise ConversionFailed("the model is not a valid ONNX model: it has an empty graph")
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise ConversionFailed(f"the model uses ONNX opset {opset}; a tokenizer needs {MIN_OPSET} or later")
    return model


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _feeds(model: onnx.ModelProto) -> _Feeds:
    inputs = real_inputs(model)
    by_name = {v.name: v for v in inputs}
    ids = next((by_name[n] for n in IDS_NAMES if n in by_name), None)
    if ids is None and len(inputs) == 1:
        ids = inputs[0]
    if ids is None:
        names = ", ".join(repr(v.name) for v in inputs)
        raise ConversionFailed(f"none of the model's inputs ({names}) is named input_ids, for the token ids")
    mask = next((by_name[n] for n in MASK_NAMES if n in by_name), None)
    types = next((by_name[n] for n in TYPE_NAMES if n in by_name), None)
    fed = {ids.name} | {v.name for v in (mask, types) if v is not None}
    others = [v.name for v in inputs if v.name not in fed]
    if others:
        raise ConversionFailed(
            f"the model's input {others[0]!r} is none of input_ids, attention_mask, token_type_ids: "
            "the tokenizer cannot feed it"
        )
    tensor = ids.type.tensor_type
    if ids.type.WhichOneof("value") != "tensor_type" or tensor.elem_type not in _INTEGER:
        what = TensorProto.DataType.Name(tensor.elem_type) if tensor.elem_type else "no tensor"
        raise ConversionFailed(f"the model's input {ids.name!r} takes {what}, not token ids (INT64 or INT32)")
    dims = list(tensor.shape.dim)
    if len(dims) != 2:
        raise ConversionFailed(
            f"the model's input {ids.name!r} has {len(dims)} axes: token ids come as [batch, sequence]"
        )
    for value in (mask, types):
        if value is not None and value.type.WhichOneof("value") != "tensor_type":
            raise ConversionFailed(f"the model's input {value.name!r} is not a tensor")
    return _Feeds(ids, mask, types, dims[1].dim_value if dims[1].HasField("dim_value") else None)


def _max_length(wanted: int | None, feeds: _Feeds | None) -> int:
    fixed = feeds.length if feeds is not None else None
    length = wanted if wanted is not None else fixed or DEFAULT_MAX_LENGTH
    if length < 2:
        raise InvalidInput(f"max_length must be at least 2 ([CLS] and [SEP]), got {length}")
    if feeds is not None and feeds.length is not None and length != feeds.length:
        raise ConversionFailed(
            f"the model's input {feeds.ids.name!r} takes sequences of {feeds.length} tokens, "
            f"not max_length {length}"
        )
    return length


def _compose(
    model: onnx.ModelProto,
    feeds: _Feeds,
    tokens: list[str],
    length: int,
    lowercase: bool,
    input_name: str,
) -> onnx.ModelProto:
    """A copy of `model` whose inputs are fed by the tokenizer instead of the caller."""
    taken = {v.name for v in model.graph.input} | {o for n in model.graph.node for o in n.output}
    if input_name in taken:
        raise ConversionFailed(f"the model already has a value named {input_name!r}: choose another name")
    batch = feeds.ids.type.tensor_type.shape.dim[0]
    nodes, ids, mask = _tokenizer_nodes(tokens, length, lowercase, input_name)
    nodes.append(_cast(ids, feeds.ids))
    if feeds.mask is not None:
        nodes.append(_cast(mask, feeds.mask))
    if feeds.types is not None:
        zeros = _PREFIX + "zeros"
        nodes.append(helper.make_node("Sub", [ids, ids], [zeros]))
        nodes.append(_cast(zeros, feeds.types))
    fed = {v.name for v in (feeds.ids, feeds.mask, feeds.types) if v is not None}
    composed = onnx.ModelProto()
    composed.CopyFrom(model)
    graph = composed.graph
    kept = [v for v in graph.input if v.name not in fed]
    del graph.input[:]
    text = helper.make_tensor_value_info(input_name, TensorProto.STRING, None)
    dims = text.type.tensor_type.shape.dim
    dims.add().CopyFrom(batch)
    dims.add().dim_value = 1
    graph.input.extend([text, *kept])
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *old])
    if not any(o.domain == DOMAIN for o in composed.opset_import):
        composed.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return composed


def _cast(source: str, target: onnx.ValueInfoProto) -> onnx.NodeProto:
    return helper.make_node("Cast", [source], [target.name], to=target.type.tensor_type.elem_type)


def _tokenizer_nodes(
    tokens: list[str], length: int, lowercase: bool, input_name: str
) -> tuple[list[onnx.NodeProto], str, str]:
    """Nodes from strings [batch, 1] to ids and mask [batch, length] (INT64), and those two names.

    A Loop runs BertTokenizer on each row (it takes one sentence, or a pair), truncating to `length`,
    and pads what it gives with [PAD] (ids) and 0 (mask); the Loop stacks the rows."""
    p = _PREFIX

    def const(name: str, values: list[int], scalar: bool = False) -> onnx.NodeProto:
        dims = [] if scalar else [len(values)]
        tensor = helper.make_tensor(p + name, TensorProto.INT64, dims, values)
        return helper.make_node("Constant", [], [p + name], value=tensor)

    body_nodes = [
        helper.make_node("Unsqueeze", [p + "i", p + "axis0"], [p + "start"]),
        helper.make_node("Add", [p + "start", p + "one"], [p + "end"]),
        helper.make_node("Slice", [p + "flat", p + "start", p + "end"], [p + "row"]),
        helper.make_node(
            "BertTokenizer",
            [p + "row"],
            [p + "row_ids", p + "row_types", p + "row_mask", p + "row_offsets"],
            domain=DOMAIN,
            vocab_file="\n".join(tokens),
            do_lower_case=int(lowercase),
            strip_accents=int(lowercase),
            max_length=length,
        ),
        helper.make_node("Shape", [p + "row_ids"], [p + "row_length"]),
        helper.make_node("Sub", [p + "length", p + "row_length"], [p + "missing"]),
        helper.make_node("Concat", [p + "zero", p + "missing"], [p + "pads"], axis=0),
        helper.make_node("Pad", [p + "row_ids", p + "pads", p + "pad_id"], [p + "padded_ids"]),
        helper.make_node("Pad", [p + "row_mask", p + "pads", p + "zero_scalar"], [p + "padded_mask"]),
        helper.make_node("Identity", [p + "cond"], [p + "cond_out"]),
    ]
    body = helper.make_graph(
        body_nodes,
        "tokenize_row",
        [
            helper.make_tensor_value_info(p + "i", TensorProto.INT64, []),
            helper.make_tensor_value_info(p + "cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info(p + "cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info(p + "padded_ids", TensorProto.INT64, [length]),
            helper.make_tensor_value_info(p + "padded_mask", TensorProto.INT64, [length]),
        ],
    )
    nodes = [
        const("flat_shape", [-1]),
        const("axis0", [0]),
        const("one", [1]),
        const("zero", [0]),
        const("length", [length]),
        const("pad_id", [tokens.index("[PAD]")], scalar=True),
        const("zero_scalar", [0], scalar=True),
        helper.make_node("Reshape", [input_name, p + "flat_shape"], [p + "flat"]),
        helper.make_node("Shape", [p + "flat"], [p + "count_1d"]),
        helper.make_node("Squeeze", [p + "count_1d", p + "axis0"], [p + "count"]),
        helper.make_node("Loop", [p + "count", ""], [p + "ids", p + "mask"], body=body, name=p + "rows"),
    ]
    return nodes, p + "ids", p + "mask"
