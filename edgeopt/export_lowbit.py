"""The low-bit side of :func:`edgeopt.export.to_tflite`: which bits each layer has, and what the manifest says of them.

``lowbit_bits={layer: bits}`` (``edgeopt.compress.lowbit.plan_bits`` of the QAT config a model was stripped from)
becomes a :func:`lowbit_plan` over every weighted layer, its layers below 8 bits the ``{layer: Q}`` that
:func:`edgeopt.tflite.lowbit.exact_lowbit_codes` takes (:func:`lowbit_levels`), and :func:`lowbit_entry` the manifest's
``lowbit`` entry: the bits, every low-bit kernel as the file stores it, and the packed size of the weights at those
widths (``edgeopt.compress.lowbit.packed_size_bytes``). The converter is called in :mod:`edgeopt.export` only.
"""
from __future__ import annotations

from edgeopt._keras import keras
from edgeopt.tflite import flatbuffer
from edgeopt.tflite import lowbit as tflite_lowbit


def lowbit_plan(model: keras.Model, lowbit_bits) -> dict[str, int] | None:
    """``{layer: weight bits}`` for every Conv2D / DepthwiseConv2D / Dense layer of ``model``: ``lowbit_bits`` (a
    mapping such as ``edgeopt.compress.lowbit.plan_bits`` gives) and 8 for the layers it leaves out; None for None.
    A name that is no such layer, or bits not in 1, 2, 4, 8, is an error naming it."""
    if lowbit_bits is None:
        return None
    from edgeopt.compress.lowbit import WEIGHTED  # lazy: TF-MOT loads only for low-bit exports
    from edgeopt.compress.lowbit_quantizers import check_bits  # lazy: as above

    if not hasattr(lowbit_bits, "items"):
        raise ValueError(f"lowbit_bits must map layer names to bits, e.g. {{'conv2': 4}} (edgeopt.compress.lowbit.plan_bits); got {lowbit_bits!r}")
    weighted = [layer.name for layer in model.layers if isinstance(layer, WEIGHTED)]
    unknown = sorted(set(lowbit_bits) - set(weighted))
    if unknown:
        raise ValueError(f"lowbit_bits names {', '.join(map(str, unknown))}, which are not Conv2D/DepthwiseConv2D/Dense layers of "
                         f"{model.name!r}; those are: {', '.join(weighted)}")
    for name, bits in lowbit_bits.items():
        check_bits(bits, f"lowbit_bits[{name!r}]")
    return {name: int(lowbit_bits.get(name, 8)) for name in weighted}


def lowbit_levels(plan: dict[str, int]) -> dict[str, int]:
    """``{layer: Q}`` of the layers of a :func:`lowbit_plan` below 8 bits: the largest level of their grid (7 at 4 bits,
    1 at 2 bits and binary), what :func:`edgeopt.tflite.lowbit.exact_lowbit_codes` takes."""
    low = {name: bits for name, bits in plan.items() if bits < 8}
    if not low:  # every export passes here: TF-MOT (about 2 s to import) loads only for low-bit ones
        return {}
    from edgeopt.compress.lowbit_quantizers import qmax  # lazy: TF-MOT loads only for low-bit exports

    return {name: 1 if bits == 1 else qmax(bits) for name, bits in low.items()}


def lowbit_entry(model, data: bytes, mode: str, plan: dict[str, int] | None, kernels: tuple) -> dict:
    """The manifest's ``lowbit`` entry: the bits of every weighted layer (``lowbit_bits``, or for an int4 file without
    it 4 where the kernel is INT4 and 8 elsewhere), each low-bit kernel as stored, the weights' packed size at those
    widths and at 8 bits (``edgeopt.compress.lowbit.packed_size_bytes``), and the operators holding INT4 kernels."""
    from edgeopt.compress.lowbit import WEIGHTED, packed_size_bytes  # lazy: TF-MOT loads only for low-bit exports

    source = "lowbit_bits"
    if plan is None:  # int4 without a plan: the widths are what the file stores
        source = "int4 kernels of the file"
        storage = tflite_lowbit.kernel_storage(data, model.name, [layer.name for layer in model.layers if isinstance(layer, WEIGHTED)])
        plan = {name: 4 if dtype == "int4" else 8 for name, dtype in storage.items()}
    int4_ops = {}
    for op in flatbuffer.list_ops(data):
        if "int4" in op.input_dtypes:
            int4_ops[op.op] = int4_ops.get(op.op, 0) + 1
    return {
        "bits": plan,
        "bits_from": source,
        "kernels": [k.to_dict() for k in kernels],
        "exact": all(k.exact for k in kernels) if kernels else None,
        "packed_weight_bytes": packed_size_bytes(model, plan),
        "int8_weight_bytes": packed_size_bytes(model, 8),
        "int4_ops": int4_ops,
        "storage": _storage_note(mode, int4_ops),
    }


def _storage_note(mode: str, int4_ops: dict) -> str:
    """What the runtime stores and executes for the low-bit kernels of a ``mode`` file (see edgeopt.tflite.int4)."""
    int8 = ("int8 kernels hold the low-bit levels as codes k * floor(127 / Q) (exact); LiteRT executes them as any int8 kernel: "
            "the low bit-width is stored, not exploited")
    if mode != "int4":
        return int8
    ops = ", ".join(f"{n} x{c}" for c, n in sorted((c, n) for n, c in int4_ops.items())) or "none"
    return (f"INT4 kernels (packed two per byte) in {ops}, read as INT4 by LiteRT's kernels (CONV_2D: built-in kernel; "
            f"FULLY_CONNECTED: XNNPACK; checked with ai-edge-litert 2.3); DEPTHWISE_CONV_2D and 8-bit layers: {int8}. "
            "ai-edge-quantizer writes operator versions 1 and keeps the float file's min_runtime_version: neither says "
            "that INT4 kernels need a recent LiteRT")
