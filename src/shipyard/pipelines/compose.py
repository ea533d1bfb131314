"""Merge the steps' ONNX graphs into one with onnx.compose, so one ONNX Runtime session runs them all.

Each step is brought to the same opsets (onnx.version_converter up to the highest default-domain
opset among them; the union of the other domains, such as ai.onnx.ml, at their highest versions) and
IR version, and its names get a prefix (step0_, step1_, ...) so nothing clashes, except the first
step's inputs and the last step's outputs, which keep their names: they are the pipeline's. A link's
adapters become nodes (link1_0_cast, link1_0_reshape) in front of the input they feed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import onnx
import onnx.compose
import onnx.version_converter
from onnx import helper, numpy_helper

from shipyard.convert.check import first_line
from shipyard.datatypes import ONNX_TO_V2
from shipyard.errors import ConversionFailed
from shipyard.pipelines.links import Link

_ELEM_TYPE = {datatype: elem for elem, datatype in ONNX_TO_V2.items()}
_DEFAULT_DOMAINS = ("", "ai.onnx")


def merge(
    models: Sequence[onnx.ModelProto], links: Sequence[Sequence[Link]], refs: Sequence[str]
) -> onnx.ModelProto:
    """One model running `models` in order, `links[i]` feeding step i's outputs to step i + 1."""
    aligned = _align([_plain(model) for model in models], refs)
    last = len(aligned) - 1
    try:
        steps = [
            onnx.compose.add_prefix(model, f"step{i}_", rename_inputs=i > 0, rename_outputs=i < last)
            for i, model in enumerate(aligned)
        ]
        merged = steps[0]
        for i, step_links in enumerate(links, start=1):
            io_map = []  # (output of the step before, input of this one, behind any adapters)
            for k, link in enumerate(step_links):
                fed = _adapted(steps[i], f"step{i}_", f"link{i}_{k}_", link)
                io_map.append((f"step{i - 1}_{link.output.name}", fed))
            merged = onnx.compose.merge_models(merged, steps[i], io_map=io_map)
    except (ValueError, onnx.checker.ValidationError) as exc:
        raise ConversionFailed(f"cannot merge the steps into one graph: {first_line(exc)}") from exc
    wanted = [output.name for output in aligned[-1].graph.output]
    _keep_outputs(merged.graph, wanted)
    ids = list(aligned[0].opset_import)
    del merged.opset_import[:]
    merged.opset_import.extend(ids)  # merge_models lists every step's opsets again
    merged.producer_name, merged.producer_version = "shipyard pipeline", ""
    merged.graph.name = "pipeline"
    merged.graph.doc_string = "pipeline of " + ", ".join(refs)
    try:
        onnx.checker.check_model(merged)
    except onnx.checker.ValidationError as exc:
        raise ConversionFailed(f"the merged graph is not valid ONNX: {first_line(exc)}") from exc
    return merged


def _plain(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without what would clash between steps: metadata, and initializers listed as inputs
    (old exporters list them; shipyard's signature never counts them as inputs)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.metadata_props[:]
    constants = {init.name for init in copy.graph.initializer}
    inputs = [value for value in copy.graph.input if value.name not in constants]
    del copy.graph.input[:]
    copy.graph.input.extend(inputs)
    return copy


def _align(models: list[onnx.ModelProto], refs: Sequence[str]) -> list[onnx.ModelProto]:
    """Every model on the highest default-domain opset, the union of the other domains, one IR version."""
    target = max(_default_opset(model) for model in models)
    others: dict[str, int] = {}
    for model in models:
        for entry in model.opset_import:
            if entry.domain not in _DEFAULT_DOMAINS:
                others[entry.domain] = max(others.get(entry.domain, 0), entry.version)
    converted = []
    for model, ref in zip(models, refs, strict=True):
        opset = _default_opset(model)
        if opset != target:
            try:
                model = onnx.version_converter.convert_version(model, target)
            except Exception as exc:  # the converter raises RuntimeError or its C++ errors
                raise ConversionFailed(
                    f"cannot bring {ref} from opset {opset} to {target} (the highest among the steps): "
                    f"{first_line(exc)}"
                ) from exc
        converted.append(model)
    ids = [helper.make_opsetid("", target), *(helper.make_opsetid(d, v) for d, v in sorted(others.items()))]
    ir = max(
        4,
        helper.find_min_ir_version_for(ids, ignore_unknown=True),
        *(model.ir_version for model in converted),
    )
    for model in converted:
        del model.opset_import[:]
        model.opset_import.extend(ids)
        model.ir_version = ir
    return converted


def _default_opset(model: onnx.ModelProto) -> int:
    return max((e.version for e in model.opset_import if e.domain in _DEFAULT_DOMAINS), default=1)


def _adapted(model: onnx.ModelProto, prefix: str, link_prefix: str, link: Link) -> str:
    """Put the link's adapters in front of the input they feed; the name the output connects to."""
    name = prefix + link.input.name
    if not link.adapters:
        return name
    graph = model.graph
    source = link_prefix + link.output.name
    nodes, current = [], source
    if link.cast is not None:
        cast = f"{link_prefix}cast"
        nodes.append(helper.make_node("Cast", [current], [cast], name=cast, to=_ELEM_TYPE[link.cast]))
        current = cast
    if link.reshape is not None:
        reshape = f"{link_prefix}reshape"
        shape = numpy_helper.from_array(np.array(link.reshape, dtype=np.int64), f"{link_prefix}shape")
        graph.initializer.append(shape)
        nodes.append(helper.make_node("Reshape", [current, shape.name], [reshape], name=reshape))
    nodes[-1].output[0] = name  # the last adapter gives what the step's own nodes read
    position = next(i for i, value in enumerate(graph.input) if value.name == name)
    dims = [d if d >= 0 else None for d in link.output.shape]
    graph.input[position].CopyFrom(
        helper.make_tensor_value_info(source, _ELEM_TYPE[link.output.datatype], dims)
    )
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    return source


def _keep_outputs(graph: onnx.GraphProto, wanted: list[str]) -> None:
    """Only `wanted` as outputs, and only the nodes and initializers they need (a classifier's label
    node, when its scores feed the next step, goes)."""
    outputs = [value for value in graph.output if value.name in wanted]
    del graph.output[:]
    graph.output.extend(outputs)
    needed = set(wanted)
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(_reads(node))
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    values = [value for value in graph.value_info if value.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(values)


def _reads(node: onnx.NodeProto) -> Iterator[str]:
    """Every name a node reads, its subgraphs' reads of the outer scope included (or more)."""
    yield from node.input
    for attribute in node.attribute:
        graphs = [*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])]
        for graph in graphs:
            for inner in graph.node:
                yield from _reads(inner)
