"""Compare two shipped artifact folders (tflite_models/<recipe>/ of two runs): weights, tensors, ops, manifest,
accuracy. Usage: python scripts/compare_artifacts.py BEFORE_DIR AFTER_DIR. Timings in the manifests always differ."""
import json, sys
A, B = sys.argv[1], sys.argv[2]
import edgeopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeopt.tflite import flatbuffer
from edgeopt.export import MANIFEST_KEY
VOLATILE = {"convert_seconds", "seconds", "file", "tools"}
def clean(d):
    if isinstance(d, dict):
        return {k: clean(v) for k, v in d.items() if k not in VOLATILE}
    if isinstance(d, list):
        return [clean(x) for x in d]
    return d
for name in ("model.tflite", "baseline_float32.tflite"):
    a = open(f"{A}/{name}", "rb").read(); b = open(f"{B}/{name}", "rb").read()
    ma = json.loads(flatbuffer.read_metadata(a, MANIFEST_KEY)); mb = json.loads(flatbuffer.read_metadata(b, MANIFEST_KEY))
    ra = flatbuffer.embed_metadata(a, MANIFEST_KEY, b"{}"); rb = flatbuffer.embed_metadata(b, MANIFEST_KEY, b"{}")
    diff = {k for k in set(clean(ma)) | set(clean(mb)) if clean(ma).get(k) != clean(mb).get(k)}
    print(name, "whole file identical:", a == b, "| model without manifest identical:", ra == rb,
          "| ops identical:", flatbuffer.list_ops(a) == flatbuffer.list_ops(b), "| manifest fields that differ (timings aside):", sorted(diff))
    for k in sorted(diff):
        print("   ", k, "before:", ma.get(k), "after:", mb.get(k))
ra = json.load(open(f"{A}/report.json")); rb = json.load(open(f"{B}/report.json"))
for sa, sb in zip(ra["stages"], rb["stages"]):
    ka = {k: v for k, v in sa["metrics"].items() if "top1" in k or k in ("sparsity", "params", "macs")}
    kb = {k: v for k, v in sb["metrics"].items() if "top1" in k or k in ("sparsity", "params", "macs")}
    print(sa["type"], "keras metrics identical:", ka == kb, ka if ka != kb else "", kb if ka != kb else "")
from edgeopt.bench import BenchResult
ba = next(s for s in ra["stages"] if s["type"] == "bench")["metrics"]; bb = next(s for s in rb["stages"] if s["type"] == "bench")["metrics"]
for stem in ba:
    A, B = BenchResult.from_dict(ba[stem]), BenchResult.from_dict(bb[stem])
    print(stem, "tflite top1 before/after:", A.accuracy.top1, B.accuracy.top1, "sizes:", A.size, B.size)
import numpy as np
def weights(data):
    m = flatbuffer.read_model(data)
    md = {e.buffer for e in (m.metadata or [])}
    bufs = [np.asarray(b.data).tobytes() if b.data is not None else b"" for i, b in enumerate(m.buffers) if i not in md]
    g = m.subgraphs[0]
    tensors = [(t.name, list(t.shape), t.type, t.buffer if t.buffer not in md else -1,
                None if t.quantization is None or t.quantization.scale is None else np.asarray(t.quantization.scale).tobytes()) for t in g.tensors]
    return bufs, tensors
for name in ("model.tflite", "baseline_float32.tflite"):
    a = open(f"{A}/{name}", "rb").read(); b = open(f"{B}/{name}", "rb").read()
    (ba, ta), (bb, tb) = weights(a), weights(b)
    print(name, "every weight buffer identical:", ba == bb, "| tensors (names, shapes, types, scales) identical:", ta == tb, len(ba), "buffers")
