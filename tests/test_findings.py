"""The findings are generated (issue #21): every ``benchmarks/*_findings.md`` is what its benchmark script renders
from the committed CSV/JSON, and every number in it comes from that data.

Each renderer module has ``findings_data(folder) -> data`` (read the committed files), ``findings_markdown(data)
-> str`` (the template) and ``FINDINGS_CONSTANTS`` (the numbers in the text that are not results: targets,
settings, facts from sources). Checks:

* the committed findings file equals the rendering of the committed data (and so do the tables that include it);
* the numbers are the data's: the data is perturbed three times (every number moved by a non-linear map that keeps
  their order) and rendered again; a number that moves with none of them was typed into the template, and
  must be one of the module's constants (or the length of a list in the data, which the maps keep); the
  renderings are compared place by place (aligned on their words), so a number that reappears elsewhere by chance
  does not count as unmoved;
* rendering needs no TensorFlow, so all of this takes about a second.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import math
import re
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RENDERERS = ("benchmarks._pruning_report", "benchmarks.quantization", "benchmarks.distillation", "benchmarks.xnnpack_sparse_probe",
             "benchmarks.quant_diagnostics")
# benchmarks/pruning_criteria.py's findings join these checks once its full run's data is committed
RENDERERS += ("benchmarks._pruning_criteria_report",) if (BENCH / "pruning_criteria.json").exists() else ()
# benchmarks/lowbit.py's, once a full run of one model has written benchmarks/lowbit_<model>.json
RENDERERS += ("benchmarks._lowbit_report",) if any(BENCH.glob("lowbit_*.json")) else ()
# benchmarks/nas.py's, once its full run has written benchmarks/nas.json
RENDERERS += ("benchmarks._nas_report",) if (BENCH / "nas.json").exists() else ()

# a number as the findings write it: 1,639,112 / 0.762 / 91.41 (followed by x, %, a space, punctuation); not part
# of a name or a shape (int8, v2, x86_64, 3x3), a version (2.3.0), a ratio written with / or :, an issue (#808)
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
NUMBER = re.compile(rf"(?<![\w.#/:,]){_NUM}(?=x(?!\d)|[^\w/:.,]|[/:.,](?!\d)|$)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _module(name: str):
    return importlib.import_module(name)


def _counted(n: str) -> bool:
    """Zeros and one-digit integers (counts, list items) are not checked."""
    v = float(n.replace(",", ""))
    return v != 0 and ("." in n or v >= 10)


def numbers(text: str) -> Counter:
    """The numbers of ``text`` outside code blocks, as written; zeros and one-digit integers left out."""
    return Counter(n for n in NUMBER.findall(FENCE.sub("", text)) if _counted(n))


def _tokens(text: str) -> list[tuple[bool, str]]:
    """``text`` outside code blocks as (is a number, token): numbers, and the words between them."""
    text, out, end = FENCE.sub("", text), [], 0
    for m in NUMBER.finditer(text):
        out += [(False, w) for w in text[end:m.start()].split()] + [(True, m.group(0))]
        end = m.end()
    return out + [(False, w) for w in text[end:].split()]


def unmoved(text: str, other: str) -> set[int]:
    """Positions (in ``_tokens(text)``) of the numbers that ``other``, the same template rendered from perturbed data,
    has unchanged at the same place (the texts aligned on their words, numbers as placeholders)."""
    a, b = _tokens(text), _tokens(other)
    skeleton = lambda tokens: ["#" if is_number else w for is_number, w in tokens]
    same = set()
    for tag, i1, i2, j1, _ in difflib.SequenceMatcher(None, skeleton(a), skeleton(b), autojunk=False).get_opcodes():
        if tag == "equal":
            same |= {i1 + k for k in range(i2 - i1) if a[i1 + k][0] and a[i1 + k] == b[j1 + k]}
    return same


PERTURBATIONS = ((1.3, 1.05), (0.75, 1.1), (1.6, 1.15))  # (float power, integer power) of the renderings
# one unit in the last written place (0.01, 0.1): a spread or difference of values of one field (e.g. three seeds'
# top-1) that small stays the same number after any order-keeping perturbation of that field, so it cannot tell data
# from a typed constant; every larger number can
AT_RESOLUTION = re.compile(r"^0\.0*1$")


def perturb(value, powers: tuple[float, float], path: tuple = ()):
    """``value`` (JSON-like) with every number moved, by a map that depends on the field (the dict keys on its path,
    list positions left out): a fraction v in (0, 1) to v ** (power x f), another float to sign x |v| ** power x f,
    a positive integer to round(v ** integer power x f) + 1, f in [1, 1.25) from a hash of the path. Values of one
    field keep their order and equalities; differences and ratios, also of two equal values in two fields, move."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {k: perturb(v, powers, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(perturb(v, powers, path) for v in value)
    power, int_power = powers
    f = 1 + zlib.crc32(f"{powers}/{'/'.join(path)}".encode()) % 1000 / 4000
    if isinstance(value, int):
        return round(value ** int_power * f) + 1 if value > 0 else value
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return value ** (power * f) if 0 < value < 1 else math.copysign(abs(value) ** power * f, value)
    return value


def list_lengths(value) -> set[str]:
    """The lengths of every list in ``value`` (perturbing keeps them: a count of rows is data, not typed in)."""
    out = set()
    if isinstance(value, dict):
        for v in value.values():
            out |= list_lengths(v)
    elif isinstance(value, (list, tuple)):
        out.add(str(len(value)))
        for v in value:
            out |= list_lengths(v)
    return out


def test_every_findings_file_has_a_renderer():
    assert sorted(p.name for p in BENCH.glob("*_findings.md")) == sorted(_module(m).FINDINGS for m in RENDERERS)


@pytest.mark.parametrize("name", RENDERERS)
def test_findings_file_is_rendered_from_the_committed_data(name):
    module = _module(name)
    assert module.findings_markdown(module.findings_data(BENCH)) == (BENCH / module.FINDINGS).read_text()


def test_tables_with_findings_are_rendered_from_the_committed_data():
    pruning, quantization, distillation = (_module(m) for m in RENDERERS[:3])
    data = pruning.findings_data(BENCH)
    assert pruning.tables_markdown(data) + "\n" + pruning.findings_markdown(data) == (BENCH / "pruning.md").read_text()
    quantization_md, clustering_md = quantization.combined_markdown(BENCH)
    assert quantization_md == (BENCH / "quantization.md").read_text()
    assert clustering_md == (BENCH / "clustering.md").read_text()
    md, _ = distillation.report_markdown(distillation.findings_data(BENCH))
    assert md == (BENCH / "distillation.md").read_text()


def write_plainly(monkeypatch, module) -> None:
    """Make ``module``'s renderer (and benchmarks._common) write files plainly: edgeopt.io's atomic write would load
    TensorFlow (seconds) for nothing in a renderer test."""
    import benchmarks._common as common

    def plain_write(path, text):
        Path(path).write_text(text)
        return Path(path)

    monkeypatch.setattr(common, "write_file", plain_write)
    monkeypatch.setattr(module, "write_file", plain_write)


def typed_numbers(module, data: dict) -> set[str]:
    """Numbers in ``module.findings_markdown(data)`` that stay put under every perturbation of the data, less the
    module's FINDINGS_CONSTANTS and the data's list lengths: numbers typed into the template (also used by the report
    tests of benchmarks whose data is not committed yet, on fake data)."""
    text = module.findings_markdown(data)
    still = set.intersection(*(unmoved(text, module.findings_markdown(perturb(data, powers))) for powers in PERTURBATIONS))
    tokens = _tokens(text)
    typed = {tokens[i][1] for i in still if _counted(tokens[i][1]) and not AT_RESOLUTION.match(tokens[i][1])}
    return typed - set(module.FINDINGS_CONSTANTS) - list_lengths(data)


@pytest.mark.parametrize("name", RENDERERS)
def test_every_number_in_the_findings_comes_from_the_data(name):
    module = _module(name)
    assert typed_numbers(module, module.findings_data(BENCH)) == set(), (
        f"numbers in {module.FINDINGS} that do not come from the data (format them from it, or list a target/setting in FINDINGS_CONSTANTS)")


def test_perturbing_moves_numbers_and_keeps_the_rest():
    data = {"rows": [{"top1": 0.9141, "bytes": 600, "n": 0, "name": "x1", "ok": True}, {"top1": 0.9081, "bytes": 600, "n": 0, "name": "x2", "ok": False}],
            "ms": {"dense": 0.423, "dense_no_rewrite": 0.423}}
    for powers in PERTURBATIONS:
        out = perturb(data, powers)
        a, b = out["rows"]
        assert a["top1"] != 0.9141 and 0 < b["top1"] < a["top1"] < 1 and a["bytes"] == b["bytes"] != 600
        assert (a["n"], a["name"], a["ok"], b["name"], b["ok"]) == (0, "x1", True, "x2", False)
        assert out["ms"]["dense"] != out["ms"]["dense_no_rewrite"]  # a ratio of 1.00 between two fields moves too
    assert numbers("0.762x, 1,639,112 -> 662,744 B, int8 3x3 v2 #808 1/8 2:4 2.3.0 x86_64 91.41% 7 0.00 (33, 65) within 0.5: met\n"
                   "```\n12.5\n```") == Counter({"0.762": 1, "1,639,112": 1, "662,744": 1, "91.41": 1, "33": 1, "65": 1, "0.5": 1})


HEAVY_MODULES = ("tensorflow", "tf_keras", "keras", "matplotlib")


def heavy_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh Python at the repository root (nothing but the repository on its path) and return which
    of :data:`HEAVY_MODULES` it imported: rendering from committed data must load none of them."""
    probe = f"{code}\nimport sys\nprint(sorted(k for k in {HEAVY_MODULES!r} if k in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_heavy_modules_after_sees_an_import():
    assert heavy_modules_after("import json") == [] and heavy_modules_after("import matplotlib") == ["matplotlib"]


def test_rendering_imports_no_tensorflow():
    code = ("import importlib; from pathlib import Path\n"
            f"for m in {RENDERERS!r}:\n"
            "    mod = importlib.import_module(m); mod.findings_markdown(mod.findings_data(Path('benchmarks')))")
    assert heavy_modules_after(code) == []
