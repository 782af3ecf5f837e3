"""Which Keras layers each operator of a converted .tflite computes, read from its tensor names.

edgeopt traces a model as ``model(x)`` inside one ``tf.function`` (``edgeopt.export``), so every TensorFlow op
is named ``<model name>/<layer name>/<op>``; the converter names an operator's output tensor after the ops it
fused, joined by ``;`` (``tiny/conv1/Relu;tiny/conv1/BiasAdd;tiny/conv1/Conv2D``), and the quantizer appends a
digit to names it duplicates (``tiny/add/add1``). An operator computes the layers named in its output tensor.
Some outputs carry no layer name: the model's outputs are renamed after the signature (``StatefulPartitionedCall:0``)
and inserted QUANTIZE/DEQUANTIZE ops are ``tfl.quantize``. Such an operator (other than QUANTIZE/DEQUANTIZE and
edgeopt's NumericVerify probes) belongs to the layers of the operator that feeds its first input: the output
SOFTMAX of ``Dense(10, activation="softmax")`` is that Dense layer's. An operator whose name has a ``scope/`` part
is named, even when none of its layers is among those asked about (a caller may ask about a few layers only, e.g.
the ones kept float), and never takes its producer's.
"""
from __future__ import annotations

from collections.abc import Iterable

from edgeopt.tflite.flatbuffer import OpInstance, list_ops

# ops that carry values between number formats or check them; they compute no layer
CARRIERS = frozenset({"QUANTIZE", "DEQUANTIZE", "CUSTOM:NumericVerify"})


def layers_in_name(name: str, scope: str, layer_names: Iterable[str]) -> frozenset[str]:
    """The layers named in tensor ``name`` (``;``-joined ``scope/layer/...`` parts) that are in ``layer_names``."""
    known = set(layer_names)
    found = set()
    for part in name.split(";"):
        pieces = part.split("/")
        if len(pieces) >= 3 and pieces[0] == scope and pieces[1] in known:
            found.add(pieces[1])
    return frozenset(found)


def op_layers(data: bytes, scope: str, layer_names: Iterable[str]) -> list[tuple[OpInstance, frozenset[str]]]:
    """Every operator of the main subgraph, in order, with the Keras layers it computes (see the module docstring).

    ``scope`` is the name the model was traced under (the Keras model's name); ``layer_names`` its layers' names.
    QUANTIZE, DEQUANTIZE and NumericVerify get no layer.
    """
    names = set(layer_names)
    ops = list_ops(data)
    producer_layers: dict[int, frozenset[str]] = {}
    out = []
    for op in ops:
        if op.op in CARRIERS:
            layers: frozenset[str] = frozenset()
        else:
            layers = layers_in_name(op.output_name, scope, names)
            if not layers and op.inputs and not _names_a_layer(op.output_name, scope):
                layers = producer_layers.get(op.inputs[0], frozenset())
        # a carrier passes on the layers of what it carries, so an unnamed op after a DEQUANTIZE still finds them
        carried = producer_layers.get(op.inputs[0], frozenset()) if op.op in CARRIERS and op.inputs else layers
        for t in op.outputs:
            producer_layers[t] = carried
        out.append((op, layers))
    return out


def _names_a_layer(name: str, scope: str) -> bool:
    """Whether tensor ``name`` has a ``scope/<layer>/...`` part (of any layer)."""
    return any(part.startswith(f"{scope}/") and part.count("/") >= 2 for part in name.split(";"))
