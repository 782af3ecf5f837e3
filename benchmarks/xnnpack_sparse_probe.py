"""Does XNNPACK's sparse (NCHW) path run for our pruned float32 MobileNetV2? A quick probe with random
weights (latency does not depend on their values, only on where the zeros are).

For each graph variant: dense float32, 80%-zero 1x1 convolutions converted plainly, and the same converted
with ``Optimize.EXPERIMENTAL_SPARSITY``; latencies (``edgeopt.bench.measure_latency``) at 1 thread, interleaved,
median of 9 rounds of per-round medians.
Variants marked "+ PAD/VALID rewrite" pass the dense and the sparse-format files through
``edgeopt.tflite.xnnpack.explicit_pad_for_xnnpack`` (exact; checked here on random inputs) and also time the
unrewritten files. Every file gets ``xnnpack_sparse_eligibility`` (would XNNPACK switch to sparse on ARM?).
On x86 CPUs with AVX XNNPACK never runs sparse (``xnn_is_chw_compatible_config``), so latencies here can only
show that the rewrite costs nothing; the speed-up needs an ARM machine (run this same script there).

``--small-sizes FILE`` instead checks (no timing) which MobileNetV2 variants at the project's small input sizes
the rewrite makes eligible, into FILE (benchmarks/xnnpack_sparse_small_sizes.json).

Findings: ``findings_markdown`` renders benchmarks/xnnpack_sparse_findings.md from those JSON files (every
measured number formatted from them; the text on XNNPACK's sources is fixed); a run writes it, and
``--findings-only`` re-renders it from the committed JSON without TensorFlow.

Run: PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py benchmarks/pruning_xnnpack_probe.json
     PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py --small-sizes benchmarks/xnnpack_sparse_small_sizes.json
     PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py --findings-only
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from benchmarks._common import md_table, span, wrap, write_file

OUT = Path("benchmarks")
PROBE, SMALL_SIZES, FINDINGS = "pruning_xnnpack_probe.json", "xnnpack_sparse_small_sizes.json", "xnnpack_sparse_findings.md"
SPARSITY = 0.8  # of every 1x1 kernel, by magnitude
ROUNDS, RUNS = 9, 20  # interleaved rounds, invokes per file and round
NOISY = 0.25  # a row whose pruned-plain file (same work as dense) reads this far from dense was disturbed by load
# numbers in the findings that are not results: settings, XNNPACK's thresholds and the sizes its rules imply,
# the Fast Sparse ConvNets speed-ups the text cites
FINDINGS_CONSTANTS = frozenset({f"{100 * SPARSITY:.0f}", f"{SPARSITY:g}", str(ROUNDS), str(RUNS), "66.7", "2.21", "32", "33", "65", "225",
                                "224", "75", "1.3", "70", "90"})


def zero_pointwise(model, sparsity=SPARSITY):
    from edgeopt import keras  # lazy: rendering the findings needs no TensorFlow

    m = keras.models.clone_model(model)
    m.set_weights(model.get_weights())
    for layer in m.layers:
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D) and tuple(layer.kernel_size) == (1, 1):
            w = layer.get_weights()
            k = w[0]
            thr = np.quantile(np.abs(k), sparsity)
            w[0] = np.where(np.abs(k) <= thr, 0.0, k).astype(np.float32)
            layer.set_weights(w)
    return m


def convert(model, sparse: bool) -> bytes:
    from edgeopt.export import convert as export_convert  # lazy: as above

    return export_convert(model, "float32", sparse_weights=sparse, explicit_pad=False)  # the probe rewrites itself


def host() -> dict:
    """CPU model and whether XNNPACK's CHW (sparse) kernels are enabled on it (not on x86 with AVX)."""
    from edgeopt.bench import litert_version, this_machine  # lazy: as above

    m = this_machine()
    avx = "avx" in m.flags
    return {"cpu": m.cpu, "machine": m.arch, "cores": m.cores, "avx": avx,
            "xnnpack_chw_enabled": not (m.arch in ("x86_64", "AMD64", "i686") and avx), "ai_edge_litert": litert_version() or "?"}


def ops(data: bytes) -> dict:
    """Operator name -> count, in order of first use."""
    from edgeopt.tflite.flatbuffer import list_ops  # lazy: as above

    out = {}
    for op in list_ops(data):
        out[op.op] = out.get(op.op, 0) + 1
    return out


def small_sizes() -> list[dict]:
    """At 32 and 33 px, small-input (stride-1 stem) and standard MobileNetV2 0.35 with SPARSITY zero 1x1 kernels,
    sparse format: what the PAD/VALID rewrite pads or leaves asymmetric, and whether XNNPACK would switch to sparse
    on ARM (with the first blocker when not). No timing."""
    from edgeopt.models import create  # lazy: as above
    from edgeopt.tflite.xnnpack import explicit_pad_for_xnnpack_report, xnnpack_sparse_eligibility

    out = []
    for size in (32, 33):
        for small in (True, False):
            model = zero_pointwise(create("mobilenet_v2", input_shape=(size, size, 3), classes=10, alpha=0.35, small_input=small))
            data, rep = explicit_pad_for_xnnpack_report(convert(model, True))
            elig = xnnpack_sparse_eligibility(data)
            out.append({"size": size, "channels": 3, "small_input": small, "rewrite": rep.to_dict(), "would_switch": elig.would_switch,
                        "blockers": list(elig.blockers)})
            print(out[-1], flush=True)
    return out


# ---- findings -------------------------------------------------------------------------------------------


def findings_data(folder: Path) -> dict:
    """The probe's results and (when checked) the small input sizes, from the committed JSON files in ``folder``."""
    small = folder / SMALL_SIZES
    return {"probe": json.loads((folder / PROBE).read_text()), "small_sizes": json.loads(small.read_text()) if small.exists() else None}


def _ratio(p: dict, a: str, b: str) -> float:
    return p["ms"][a] / p["ms"][b]


def _measurements(probe: dict) -> list[str]:
    first = next(iter(probe.values()))
    host, rounds, runs = first["host"], first.get("rounds", ROUNDS), first.get("runs", RUNS)
    dash = "-"
    table = md_table(
        ["graph", "dense ms", "pruned plain ms", "sparse ms", "sparse / dense", "dense no-rewrite ms", "sparse no-rewrite ms",
         "bytes dense -> sparse", "PAD ops", "ARM?", "blockers", "1x1+FC zeros in cluster"],
        ([name, f"{p['ms']['dense']:.3f}", f"{p['ms']['pruned_plain']:.3f}", f"{p['ms']['pruned_sparsity_flag']:.3f}",
          f"{_ratio(p, 'pruned_sparsity_flag', 'dense'):.2f}",
          f"{p['ms']['dense_no_rewrite']:.3f}" if "dense_no_rewrite" in p["ms"] else dash,
          f"{p['ms']['pruned_sparsity_flag_no_rewrite']:.3f}" if "pruned_sparsity_flag_no_rewrite" in p["ms"] else dash,
          f"{p['bytes']['dense']:,} -> {p['bytes']['pruned_sparsity_flag']:,}", p["ops_dense"].get("PAD", 0),
          "yes" if p["xnnpack_would_switch_on_arm"]["pruned_sparsity_flag"] else "no", len(p["xnnpack_blockers_sparse_file"]),
          _cluster_zeros(p) or dash] for name, p in probe.items()),
        "lrrrrrrlrlrr")
    lines = [
        f"## Measurements (this machine: {host['cpu']}, {host['machine']}, {host['cores']} cores shared with other jobs, AVX: {host['avx']}, "
        f"XNNPACK CHW kernels enabled: {host['xnnpack_chw_enabled']}; ai-edge-litert {host['ai_edge_litert']})", "",
        *wrap(f"Random weights, {100 * SPARSITY:.0f}% of every 1x1 kernel zeroed by magnitude (the FC stays dense), float32, 1 thread; each "
              f"variant's files timed interleaved (A,B,C[,D,E] x {rounds} rounds x {runs} invokes), medians; compare within a row only (the "
              "load on the machine changed between rows). `sparse` = `Optimize.EXPERIMENTAL_SPARSITY`; in the rewrite rows `dense` and "
              "`sparse` are the rewritten files and `*_no_rewrite` the converter's. `ARM?` = `xnnpack_sparse_eligibility(...).would_switch` "
              "of the sparse file; `blockers` = its convolutions XNNPACK would reject.", width=120),
        f"Command: `PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py benchmarks/{PROBE}`", "",
        *table, "",
        "Rewrite details (`explicit_pad_for_xnnpack_report`) and max |output difference| rewritten vs converter file on a random input:", "",
    ]
    for name, p in probe.items():
        if p.get("rewrite"):
            d = p["rewrite_max_abs_output_diff"]
            lines.append(f"* {name}: {p['rewrite']}; max |diff| dense {d['dense']:g}, sparse {d['pruned_sparsity_flag']:g}; "
                         f"size cost {_rewrite_cost(p):,} bytes")
    zoo_name, zoo = next(iter(probe.items()))
    blockers = zoo["xnnpack_blockers_sparse_file"]
    lines += ["", f"Blockers in an unrewritten sparse file ({zoo_name.split(' ')[0]}, first 3 of {len(blockers)}): "
              + "; ".join(f"`{b}`" for b in blockers[:3]), ""]
    return lines


def _cluster_zeros(p: dict) -> str:
    good = [c for c in p["xnnpack_clusters_sparse_file"] if c["compatible"]]
    return f"{100 * good[0]['zeros'] / good[0]['params']:.1f}%" if good else ""


def _rewrite_cost(p: dict) -> int:
    return p["bytes"]["pruned_sparsity_flag"] - p["bytes"]["pruned_sparsity_flag_no_rewrite"]


def _small_sizes(doc: dict | None) -> list[str]:
    if doc is None:
        return wrap("The check at the project's small sizes (32x32 and 33x33, small-input and standard stem) is written by "
                    f"`xnnpack_sparse_probe.py --small-sizes benchmarks/{SMALL_SIZES}`, which has not been run yet; the rule above "
                    "predicts that the standard MobileNetV2 at 33x33x3 is the one that switches.") + [""]
    small = doc["sizes"]
    rows = []
    for r in small:
        rw = r["rewrite"]
        rows.append([f"{r['size']}x{r['size']}x{r['channels']}", "small_input (stride-1 stem)" if r["small_input"] else "standard (stride-2 stem)",
                     f"{rw['padded']} / {rw['asymmetric_left']}", "yes" if r["would_switch"] else "no", r["blockers"][0] if r["blockers"] else "-"])
    switch = [r for r in small if r["would_switch"]]
    lines = wrap(f"Checked at the project's small sizes ({100 * SPARSITY:.0f}%-zero 1x1 kernels, sparse format, rewritten; "
                 f"`xnnpack_sparse_eligibility`; `{SMALL_SIZES}`, made by `{doc['command']}`):") + [""]
    lines += md_table(["input", "zoo variant", "rewrite: padded / asymmetric left", "would switch on ARM", "first blocker"], rows) + [""]
    if switch:
        names = " and ".join(f"the {'small-input' if r['small_input'] else 'standard'} MobileNetV2 at {r['size']}x{r['size']} with "
                             f"{r['channels']} channels" for r in switch)
        lines += wrap(f"So for Fashion-MNIST the sparse-path candidate is {names} (`load_dataset(\"fashion_mnist\", "
                      f"image_size={switch[0]['size']}, channels={switch[0]['channels']})`), exported with `sparse_weights=True` (which "
                      "rewrites by default); its accuracy at that size would still need to be checked.") + [""]
    else:
        lines += wrap("None of these switches: at these sizes no zoo MobileNetV2 reaches the sparse path.") + [""]
    return lines


def _reading(probe: dict) -> list[str]:
    noisy = {n: p for n, p in probe.items() if abs(_ratio(p, "pruned_plain", "dense") - 1) > NOISY}
    calm = [p for n, p in probe.items() if n not in noisy]
    rewritten = [p for p in probe.values() if p.get("rewrite")]
    host = next(iter(probe.values()))["host"]
    out = []
    text = (f"Sparse-format files run at the dense speed, rewritten or not: sparse / dense {span(_ratio(p, 'pruned_sparsity_flag', 'dense') for p in calm)} "
            f"in {len(calm)} rows.")
    for name, p in noisy.items():
        text += (f" The `{name.split(' ')[0]}` row ({_ratio(p, 'pruned_sparsity_flag', 'dense'):.2f}) is load noise: its `pruned plain` file, "
                 f"which computes exactly what `dense` computes, also read {_ratio(p, 'pruned_plain', 'dense'):.2f}x.")
    if not host["xnnpack_chw_enabled"]:
        text += (" On this x86 host with AVX XNNPACK never takes the NCHW path (hardware gate above), so there is no speed-up to see "
                 f"here, and the <= {SPARSITY:g}x target can't be reached on this machine.")
    out += wrap(text, "* ")
    if rewritten:
        out += wrap(f"The rewrite costs nothing on the dense path: `dense` (rewritten) and `dense_no_rewrite` read "
                    f"{span(_ratio(p, 'dense', 'dense_no_rewrite') for p in rewritten)}x of each other, as expected from XNNPACK folding "
                    "each PAD into its convolution.", "* ")
    out += wrap(f"What the format gives here is size: the sparse format cuts the float32 file from "
                f"{span((p['bytes']['dense'] / 1e6 for p in probe.values()), '{:.2f}')} MB to "
                f"{span((p['bytes']['pruned_sparsity_flag'] / 1e6 for p in probe.values()), '{:.2f}')} MB.", "* ")
    yes = all(p["xnnpack_would_switch_on_arm"]["pruned_sparsity_flag"] for p in rewritten)
    no = not any(v for p in probe.values() for k, v in p["xnnpack_would_switch_on_arm"].items() if k != "pruned_sparsity_flag" or not p.get("rewrite"))
    out += wrap(f"Eligibility on ARM: **{'yes' if yes else 'not always'}** for the rewritten files with a symmetric-padded 3-channel stride-2 "
                f"stem (zoo at 225, or `explicit_padding` models), **{'no' if no else 'sometimes'}** for every file as the converter writes it.", "* ")
    return out


def findings_markdown(data: dict) -> str:
    """xnnpack_sparse_findings.md: what XNNPACK needs to go sparse (from its sources: fixed text), which models can be
    made eligible, and the probe's measurements and their reading, every number formatted from the JSON."""
    probe = data["probe"]
    host = next(iter(probe.values()))["host"]
    rewritten = {n: p for n, p in probe.items() if p.get("rewrite")}
    plain = {n: p for n, p in probe.items() if not p.get("rewrite")}
    costs = [_rewrite_cost(p) for p in rewritten.values()]
    shares = [_rewrite_cost(p) / p["bytes"]["pruned_sparsity_flag"] for p in rewritten.values()]
    diffs = [v for p in rewritten.values() for v in p["rewrite_max_abs_output_diff"].values()]
    zoo_blockers = sorted({len(p["xnnpack_blockers_sparse_file"]) for n, p in plain.items() if n.startswith("zoo")})
    clusters = [c for p in rewritten.values() for c in p["xnnpack_clusters_sparse_file"] if c["compatible"]]
    unrewritten_fail = not any(v for p in probe.values() for k, v in p["xnnpack_would_switch_on_arm"].items()
                               if k != "pruned_sparsity_flag" or not p.get("rewrite"))
    rewritten_pass = all(p["xnnpack_would_switch_on_arm"]["pruned_sparsity_flag"] for p in rewritten.values())
    lines = [
        "# XNNPACK sparse (NCHW) inference for pruned float32 MobileNetV2 — findings (issue #4)", "",
        f"Runtime: `ai_edge_litert` {host['ai_edge_litert']} `Interpreter` (default XNNPACK delegate), float32, 1 thread.",
        "Code: `edgeopt/tflite/xnnpack.py` (`explicit_pad_for_xnnpack`, `xnnpack_sparse_eligibility`),",
        f"probe `benchmarks/xnnpack_sparse_probe.py`, raw numbers `benchmarks/{PROBE}`,",
        "tests `tests/test_tflite_sparse.py`. This file is rendered by the probe from its JSON (`--findings-only`).", "",
        "## Summary", "",
        *wrap("**The graph problem is solved.** The TF converter writes every 'same' convolution as `padding=SAME`; XNNPACK's sparse path "
              "rejects every depthwise convolution with that padding, and the stem must have explicit padding 1 on each side. "
              "`explicit_pad_for_xnnpack(tflite_bytes)` rewrites the converted flatbuffer: every CONV_2D / DEPTHWISE_CONV_2D with "
              "`padding=SAME` whose TF padding is symmetric becomes `PAD` (shared int32 paddings constant, new intermediate tensor) + the "
              "convolution with `padding=VALID`. SAME convolutions that pad nothing (1x1) just become VALID. "
              f"The result is **{'exact' if max(diffs) == 0 else 'not bit-exact'}**: max |output diff| {max(diffs):g} on random inputs for every "
              "probed MobileNetV2, with and without XNNPACK (tests check allclose too). The sparse tensors (`DENSIFY` ops) pass through "
              f"untouched, and the rewrite adds {span((c / 1000 for c in costs), '{:.1f}')} KB ({span((100 * v for v in shares), '{:.1f}')}% "
              "of the sparse float32 file). XNNPACK folds a zero `PAD` into the next convolution's explicit padding (`xnn_subgraph_fusion`), "
              "so dense latency doesn't change (see the `dense` vs `dense_no_rewrite` columns below). `edgeopt.export` applies the rewrite "
              "to float32 exports with `sparse_weights=True` (`explicit_pad=True`, the default).", "* "),
        *wrap("**A static re-enactment of XNNPACK's rules says the rewritten files switch to sparse.** `xnnpack_sparse_eligibility(tflite_bytes)` "
              "replays on the flatbuffer what the delegate and XNNPACK do: DENSIFY -> static weights + `XNN_FLAG_HINT_SPARSE_INFERENCE`, "
              "SAME -> `XNN_FLAG_TENSORFLOW_SAME_PADDING`, PAD fusion, `xnn_check_nchw_compatibility`, the cluster search and the 2/3-zeros "
              "test of `xnn_subgraph_rewrite_for_nchw`. "
              f"{'Every' if unrewritten_fail else 'Not every'} unrewritten file fails ({' or '.join(str(n) for n in zoo_blockers)} blockers for "
              f"the zoo models: the stem and every depthwise). {'Every' if rewritten_pass else 'Not every'} rewritten sparse-format file passes: "
              f"one {' or '.join(str(n) for n in sorted({c['nodes'] for c in clusters}))}-node cluster from the stem to the MEAN (and the "
              f"classifier FC), {span((100 * c['zeros'] / c['params'] for c in clusters), '{:.1f}')}% zeros over its 1x1 + FC weights "
              f"(threshold: more than {200 / 3:.1f}%).", "* "),
        *wrap("**It cannot run on this machine, or on any x86 CPU with AVX, whatever the model.** XNNPACK turns its CHW/sparse kernels off on "
              "x86 CPUs with AVX: `xnn_is_chw_compatible_config()` returns `!(arch_flags & xnn_arch_x86_avx)` with the comment \"Sparse "
              "microkernels on x86 currently target only SSE, and on processors with AVX ISA dense inference is expected to be faster than "
              "sparse\" (XNNPACK `src/xnnpack/hardware-config.h`; older versions set `XNN_INIT_FLAG_CHW_OPT` only "
              "`if (!cpuinfo_has_x86_avx())`), and `xnn_subgraph_optimize` calls `xnn_subgraph_rewrite_for_nchw` only when that is true. "
              f"This host is an `{host['cpu']}` ({host['machine']}, AVX {'yes' if host['avx'] else 'no'}), so "
              f"{'every probed file runs dense' if not host['xnnpack_chw_enabled'] else 'XNNPACK may run the eligible files sparse'}. "
              "On ARM (every Android phone, which is the target) that gate is `true`. No runtime option gets around it. "
              "`CpuOptions(xnnpack_flags=...)` of `CompiledModel` sets the delegate's `TFLITE_XNNPACK_DELEGATE_FLAG_*` options (LiteRT's "
              "`litert_cpu_options`: \"To get a default XNNPack flags, use `TfLiteXNNPackDelegateOptionsDefault`\"; LiteRT itself ORs in "
              "`TFLITE_XNNPACK_DELEGATE_FLAG_ENABLE_LATEST_OPERATORS`), and none of those asks for sparse inference: the delegate decides "
              "that from the DENSIFY ops alone. Even a forced `XNN_FLAG_HINT_SPARSE_INFERENCE` would stop at the hardware gate in "
              "`xnn_subgraph_optimize`. The shipped build also compiles XNNPACK's logging out (`strings` finds none of its \"sparse "
              "inference\" messages in the `ai_edge_litert` libraries), so there is no log to read either.", "* "),
        *wrap(f"**The latency target (<= {SPARSITY:g}x dense) is therefore not measured: it was not met here, and this machine cannot meet "
              f"it.** Measured here ({host['machine']}, interleaved medians): the rewritten {100 * SPARSITY:.0f}%-sparse file runs at "
              f"{span(_ratio(p, 'pruned_sparsity_flag', 'dense') for p in rewritten.values())}x of dense, and without the rewrite at "
              f"{span(_ratio(p, 'pruned_sparsity_flag_no_rewrite', 'dense_no_rewrite') for p in rewritten.values())}x. To measure the real "
              "gain, run the same probe on an ARM64 Linux machine (ai-edge-litert has aarch64 wheels; e.g. a Raspberry Pi 4/5, Graviton, an "
              "Apple-silicon Linux VM) or use TFLite's `benchmark_model` on a phone with the `zoo_225 + PAD/VALID rewrite` files: "
              "`PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py out.json`; the `host.xnnpack_chw_enabled` field must be true there. "
              "What to expect there (XNNPACK's \"Fast Sparse ConvNets\" results): ~1.3-2x at 70-90% sparsity on ARM phones.", "* "),
        "",
        "## What must hold for XNNPACK to go sparse (sources)", "",
        "1. Sparse weights in the file. `tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc`: in `PrepareOpsToDelegate`",
        "   a `DENSIFY` node whose input is a read-only float tensor with `sparsity` goes into `static_unpack_nodes_`",
        "   and its output into `static_sparse_weights_`; `Subgraph::Create` sets `has_sparse_weights` when any",
        "   delegated node reads one, and then `flags |= XNN_FLAG_HINT_SPARSE_INFERENCE` before",
        "   `xnn_create_runtime_v4`. Zeros in dense weights are never looked at, so `Optimize.EXPERIMENTAL_SPARSITY`",
        "   (export's `sparse_weights=True`) is required.",
        "2. Hardware gate: `xnn_is_chw_compatible_config(hardware_config)` (see above). False on x86 with AVX.",
        "3. `xnn_check_nchw_compatibility` (XNNPACK `src/subgraph.c`), per node:",
        "   * CONV 1x1: no padding, stride 1, groups 1 -> NCHW. CONV 3x3: padding exactly 1 on all four sides,",
        "     stride 2, **3 input channels** -> NHWC->NCHW (the cluster's start). Anything else: no.",
        "   * DEPTHWISE 3x3 or 5x5, stride 1 or 2, multiplier 1, **no `XNN_FLAG_TENSORFLOW_SAME_PADDING`**, padding",
        "     exactly k//2 on all sides -> NCHW.",
        "   * ADD/MUL on 4-D tensors, unary ops on 4-D tensors, resize-bilinear, FC -> NCHW; MEAN/SUM on 4-D ->",
        "     NCHW and NCHW->NHWC (the cluster's end). Everything else: no.",
        "4. `xnn_subgraph_rewrite_for_nchw`: connected clusters from a MEAN back to the stem; every value a cluster",
        "   reads must be read only by cluster nodes; the cluster's 1x1 convolution and FC weights together must be",
        "   **more than 2/3 zeros** (`num_zeroes * 3 > num_params * 2`).",
        "5. `xnn_subgraph_fusion` runs first (`xnn_subgraph_optimize`): a `static_constant_pad` with zero value,",
        "   spatial-only padding and one consumer is folded into a following convolution or depthwise convolution",
        "   **that doesn't carry `XNN_FLAG_TENSORFLOW_SAME_PADDING`**, adding to its explicit padding. That is what",
        "   makes PAD + VALID equivalent to explicit padding inside XNNPACK.", "",
        "Why the converter's files fail: the delegate maps `padding=SAME` to `XNN_FLAG_TENSORFLOW_SAME_PADDING`",
        "(rule 3 rejects every depthwise, and the stem has padding 0 + flag, not 1), and the TF 2.21 converter",
        "folds a symmetric `ZeroPadding2D` before a stride-1 convolution back into SAME (only the stride-2 PADs,",
        "which aren't SAME-equivalent, stay), so rewriting the Keras model (`explicit_padding`) doesn't help alone.", "",
        "## Which models can be made eligible", "",
        "* Stride-2 'same' layers pad symmetrically only when their input size is **odd** (TF pads `total // 2`",
        "  before and the rest after; for k=3, s=2: even size -> (0, 1), odd size -> (1, 1)). For MobileNetV2 (five",
        "  stride-2 layers) an input of `32 k + 1` (33, 65, ..., 225) gives every stride-2 layer an odd input, so the",
        "  rewrite alone, **with no retraining**, makes the zoo model eligible (`zoo_225` rows). At 224 the four",
        "  stride-2 depthwise layers and the stem stay asymmetric: the rewrite leaves them (`asymmetric_left`) and",
        "  the file stays ineligible. Alternative: build the model with explicit symmetric padding",
        "  (`edgeopt.compress.graph.explicit_padding`, which changes stride-2 layers, so it needs (re)training),",
        "  then rewrite (`explicit_pad_224 + rewrite` rows: eligible).",
        "* The stem must be a 3x3 stride-2 convolution on **3 channels**: the 32x32 small-input zoo variant",
        "  (stride-1 stem) and any 1-channel (grayscale Fashion-MNIST) model can never start a cluster. Fashion-MNIST",
        "  models need `channels=3` and a stride-2 stem (e.g. `explicit_padding(..., stem_stride=2)` at 64x64, or the",
        "  standard stem at 33x33/65x65) to qualify.",
        "* More than 2/3 of the 1x1 + classifier weights must be zero (a 75% layer-wise pruned model qualifies).", "",
        *_small_sizes(data["small_sizes"]),
        *_measurements(probe), "",
        "## Reading the numbers", "",
        *_reading(probe), "",
        "## How to use it", "",
        "```python",
        "from edgeopt.export import convert",
        "from edgeopt.tflite.xnnpack import explicit_pad_for_xnnpack, xnnpack_sparse_eligibility",
        "data = convert(pruned_model, \"float32\", sparse_weights=True)  # PAD + VALID for symmetric SAME convolutions (explicit_pad=True)",
        "data = explicit_pad_for_xnnpack(other_data)  # the same rewrite for a .tflite converted elsewhere",
        "print(xnnpack_sparse_eligibility(data).to_dict())  # would_switch, clusters (zeros/params), blockers",
        "```", "",
        "## Not done / open", "",
        "* No latency measurement of the sparse path: it needs an ARM CPU (none here; the lent GPU machines are not",
        "  available to this task and would be x86 too). Run the probe there; expect the `ARM? = yes` rows to drop.",
        "* `xnnpack_sparse_eligibility` re-enacts XNNPACK's rules from the current sources; it covers the ops",
        "  MobileNetV2 uses (conv, depthwise, pad, add/mul, unary activations, mean, FC) and treats all others as",
        "  incompatible. It is a prediction, not an observation.",
        "* float16 sparse exports (fp16 weights + DENSIFY + DEQUANTIZE) are not tested with the rewrite.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="JSON file for the results (default: print only)")
    ap.add_argument("--small-sizes", metavar="FILE", help="check the small input sizes (no timing) into FILE instead")
    ap.add_argument("--findings-only", action="store_true", help=f"re-render {FINDINGS} from the committed JSON; measures nothing")
    args = ap.parse_args(argv)
    if args.findings_only:
        write_file(OUT / FINDINGS, findings_markdown(findings_data(OUT)))
        return
    if args.small_sizes:
        command = f"PYTHONPATH=. python benchmarks/xnnpack_sparse_probe.py --small-sizes {args.small_sizes}"
        write_file(args.small_sizes, json.dumps({"command": command, "sizes": small_sizes()}, indent=1) + "\n")
        return
    results = probe()
    if args.out:
        write_file(args.out, json.dumps(results, indent=1))
        if Path(args.out).resolve() == (OUT / PROBE).resolve():
            write_file(OUT / FINDINGS, findings_markdown(findings_data(OUT)))


def probe() -> dict:
    """Every graph variant's files timed, sized and checked for eligibility (see the module docstring)."""
    from benchmarks._common import median_latency_ms  # lazy: as above
    from edgeopt.compress.graph import explicit_padding
    from edgeopt.export import run_tflite
    from edgeopt.models import create
    from edgeopt.tflite.xnnpack import explicit_pad_for_xnnpack_report, xnnpack_sparse_eligibility

    variants = {
        "zoo_32x32 (stem s1, 'same' padding)": (create("mobilenet_v2", input_shape=(32, 32, 3), classes=10, alpha=0.35), False),
        "zoo_224 (stem s2, 'same' padding)": (create("mobilenet_v2", input_shape=(224, 224, 3), classes=10, alpha=0.35), False),
        "explicit_pad_224 (ZeroPadding2D + valid)": (explicit_padding(create("mobilenet_v2", input_shape=(224, 224, 3), classes=10, alpha=0.35)), False),
        "explicit_pad_64_stem_s2 (64x64 in, 32x32 after stem)": (explicit_padding(
            create("mobilenet_v2", input_shape=(64, 64, 3), classes=10, alpha=0.35, small_input=True), stem_stride=2
        ), False),
        "zoo_225 + PAD/VALID rewrite (exact, all stride-2 inputs odd)": (create("mobilenet_v2", input_shape=(225, 225, 3), classes=10, alpha=0.35), True),
        "explicit_pad_224 + PAD/VALID rewrite": (explicit_padding(create("mobilenet_v2", input_shape=(224, 224, 3), classes=10, alpha=0.35)), True),
        "explicit_pad_64_stem_s2 + PAD/VALID rewrite": (explicit_padding(
            create("mobilenet_v2", input_shape=(64, 64, 3), classes=10, alpha=0.35, small_input=True), stem_stride=2
        ), True),
    }
    machine = host()
    print("host:", machine, flush=True)
    results = {}
    for name, (model, rewrite) in variants.items():
        pruned = zero_pointwise(model)
        datas = {"dense": convert(model, False), "pruned_plain": convert(pruned, False), "pruned_sparsity_flag": convert(pruned, True)}
        extra = {}
        if rewrite:
            dense_rw, rep_dense = explicit_pad_for_xnnpack_report(datas["dense"])
            sparse_rw, rep = explicit_pad_for_xnnpack_report(datas["pruned_sparsity_flag"])
            x = np.random.default_rng(1).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
            diff = {
                "dense": float(np.abs(run_tflite(dense_rw, x) - run_tflite(datas["dense"], x)).max()),
                "pruned_sparsity_flag": float(np.abs(run_tflite(sparse_rw, x) - run_tflite(datas["pruned_sparsity_flag"], x)).max()),
            }
            assert max(diff.values()) <= 1e-5, f"rewrite changed the outputs: {diff}"
            datas["dense_no_rewrite"], datas["pruned_sparsity_flag_no_rewrite"] = datas["dense"], datas["pruned_sparsity_flag"]
            datas["dense"], datas["pruned_sparsity_flag"] = dense_rw, sparse_rw
            extra = {"rewrite": rep.to_dict(), "rewrite_max_abs_output_diff": diff}
        lat = median_latency_ms(datas, ROUNDS, threads=1, runs=RUNS, min_seconds=0.0)
        elig = {k: xnnpack_sparse_eligibility(v) for k, v in datas.items()}
        results[name] = {
            "ms": lat,
            "bytes": {k: len(v) for k, v in datas.items()},
            "ops_dense": ops(datas["dense"]),
            "ops_sparse": ops(datas["pruned_sparsity_flag"]),
            "xnnpack_would_switch_on_arm": {k: e.would_switch for k, e in elig.items()},
            "xnnpack_blockers_sparse_file": list(elig["pruned_sparsity_flag"].blockers),
            "xnnpack_clusters_sparse_file": list(elig["pruned_sparsity_flag"].clusters),
            "host": machine,
            "rounds": ROUNDS, "runs": RUNS, "load_average": list(os.getloadavg()),
            **extra,
        }
        print(name, json.dumps({k: results[name][k] for k in ("ms", "bytes", "xnnpack_would_switch_on_arm")}), flush=True)
    return results


if __name__ == "__main__":
    main()
