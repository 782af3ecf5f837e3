"""Standard TFLite Metadata for image classifiers: what MediaPipe's ImageClassifier (and Android's other
metadata readers) need to run a .tflite with no code of the app's own.

The metadata is a ``ModelMetadata`` flatbuffer (schema ``metadata_schema.fbs``, file identifier ``M001``;
mediapipe ships it as ``mediapipe/tasks/metadata/metadata_schema.fbs``) stored in the model's metadata
entry ``TFLITE_METADATA``. It holds the model's name, description, version, author and license; for the
input image its colour space, size, NormalizationOptions (mean / std in pixel units) and value range
(Stats); for the output the labels as a ``TENSOR_AXIS_LABELS`` associated file. Associated files are
packed into the .tflite itself as a zip archive appended to the flatbuffer (the metadata spec's way:
flatbuffer readers ignore trailing bytes, metadata readers find the zip's central directory at the end),
so the one file is all an app needs.

Written with the ``flatbuffers`` Builder directly (field ids from the schema), so exporting needs no
mediapipe; :func:`read` parses the same tables back for ``edgeopt inspect`` and the tests, and
MediaPipe itself is the judge in the test suite.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import flatbuffers
import numpy as np
from flatbuffers.table import Table

from edgeopt.tflite import flatbuffer

METADATA_KEY = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # image properties, normalization, stats and axis-label files are all 1.0.0 features
LABELS_NAME = "labels.txt"

# enum and union values of metadata_schema.fbs
_COLOR_SPACES = {"RGB": 1, "GRAYSCALE": 2}
_COLOR_NAMES = {v: k for k, v in _COLOR_SPACES.items()}
_FILE_TYPES = {"DESCRIPTIONS": 1, "TENSOR_AXIS_LABELS": 2, "TENSOR_VALUE_LABELS": 3}
_FILE_TYPE_NAMES = {0: "UNKNOWN", **{v: k for k, v in _FILE_TYPES.items()}}
_CONTENT_IMAGE, _CONTENT_FEATURE = 2, 1  # ContentProperties union: FeatureProperties = 1, ImageProperties = 2
_UNIT_NORMALIZATION = 1  # ProcessUnitOptions union: NormalizationOptions = 1


@dataclass(frozen=True)
class ClassifierMetadata:
    """What the metadata of an image classifier says. ``mean``/``std`` are in pixel units (0..255):
    model input = (pixel - mean) / std; ``input_range`` is the (min, max) of the input tensor's values."""

    name: str
    labels: tuple[str, ...]
    image_size: tuple[int, int]
    channels: int = 3
    mean: float = 127.5
    std: float = 127.5
    input_range: tuple[float, float] = (-1.0, 1.0)
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    output_description: str = "Probability of each class."
    labels_file: str = LABELS_NAME
    normalization: bool = True  # False: mean/std unknown, no NormalizationOptions (MediaPipe then refuses float input)

    def __post_init__(self):
        if not self.labels:
            raise ValueError("metadata needs the class labels (one per model output)")
        if self.channels not in (1, 3):
            raise ValueError(f"metadata: channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if not self.std:
            raise ValueError("metadata: std must not be 0")

    @property
    def color_space(self) -> str:
        return "RGB" if self.channels == 3 else "GRAYSCALE"

    def manifest_entry(self) -> dict:
        """What edgeopt's manifest says about this metadata."""
        return {"standard": METADATA_KEY, "name": self.name, "packed_files": [self.labels_file], "normalization": self.normalization}


# ---- writing --------------------------------------------------------------------------------------------


_PREPEND = {"off": "PrependUOffsetTRelativeSlot", "i8": "PrependInt8Slot", "u8": "PrependUint8Slot", "u32": "PrependUint32Slot"}


def _table(b: flatbuffers.Builder, slots: list[tuple[str, int, object]]) -> int:
    """One table from (kind, field id, value) slots; kind is a key of :data:`_PREPEND`; None values are skipped."""
    slots = [s for s in slots if s[2] is not None]
    b.StartObject(1 + max((s[1] for s in slots), default=-1))
    for kind, slot, value in slots:
        getattr(b, _PREPEND[kind])(slot, value, 0)
    return b.EndObject()


def _offsets(b: flatbuffers.Builder, items: list[int]) -> int:
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        b.PrependUOffsetTRelative(item)
    return b.EndVector()


def _string(b: flatbuffers.Builder, text: str) -> int | None:
    return b.CreateString(text) if text else None


def _floats(b: flatbuffers.Builder, values) -> int:
    return b.CreateNumpyVector(np.asarray(values, np.float32))


def _stats(b, lo: float, hi: float) -> int:
    return _table(b, [("off", 0, _floats(b, [hi])), ("off", 1, _floats(b, [lo]))])  # Stats: max 0, min 1


def build(meta: ClassifierMetadata) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) for ``meta``."""
    b = flatbuffers.Builder(1024)
    h, w = meta.image_size
    # input tensor: image content, normalization, value range
    size = _table(b, [("u32", 0, int(w)), ("u32", 1, int(h))])  # ImageSize: width 0, height 1
    image = _table(b, [("i8", 0, _COLOR_SPACES[meta.color_space]), ("off", 1, size)])  # ImageProperties
    content_in = _table(b, [("u8", 0, _CONTENT_IMAGE), ("off", 1, image)])  # Content: properties type 0, properties 1
    units = stats = None
    if meta.normalization:
        norm = _table(b, [("off", 0, _floats(b, [meta.mean] * meta.channels)), ("off", 1, _floats(b, [meta.std] * meta.channels))])
        units = _offsets(b, [_table(b, [("u8", 0, _UNIT_NORMALIZATION), ("off", 1, norm)])])  # ProcessUnit: options type 0, options 1
        stats = _stats(b, *meta.input_range)
    tensor_in = _table(b, [
        ("off", 0, b.CreateString("image")),
        ("off", 1, b.CreateString(f"Input image ({meta.color_space}, {w}x{h}); model input = (pixel - mean) / std.")),
        ("off", 3, content_in), ("off", 4, units), ("off", 5, stats),
    ])
    # output tensor: probabilities with the labels file
    labels = _table(b, [  # AssociatedFile: name 0, description 1, type 2
        ("off", 0, b.CreateString(meta.labels_file)), ("off", 1, b.CreateString("Class labels, one per line, in output order.")),
        ("i8", 2, _FILE_TYPES["TENSOR_AXIS_LABELS"]),
    ])
    feature = _table(b, [])
    content_out = _table(b, [("u8", 0, _CONTENT_FEATURE), ("off", 1, feature)])
    tensor_out = _table(b, [
        ("off", 0, b.CreateString("probability")), ("off", 1, _string(b, meta.output_description)),
        ("off", 3, content_out), ("off", 5, _stats(b, 0.0, 1.0)), ("off", 6, _offsets(b, [labels])),
    ])
    subgraph = _table(b, [("off", 2, _offsets(b, [tensor_in])), ("off", 3, _offsets(b, [tensor_out]))])
    root = _table(b, [  # ModelMetadata: name 0, description 1, version 2, subgraphs 3, author 4, license 5, min_parser_version 7
        ("off", 0, b.CreateString(meta.name)), ("off", 1, _string(b, meta.description)), ("off", 2, _string(b, meta.version)),
        ("off", 3, _offsets(b, [subgraph])), ("off", 4, _string(b, meta.author)), ("off", 5, _string(b, meta.license)),
        ("off", 7, b.CreateString(MIN_PARSER_VERSION)),
    ])
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def labels_text(labels) -> bytes:
    return "".join(f"{name}\n" for name in labels).encode()


# ---- associated files (a zip appended to the flatbuffer) --------------------------------------------------


def pack_files(model_bytes: bytes, files: dict[str, bytes]) -> bytes:
    """``model_bytes`` (a bare flatbuffer) followed by a stored (uncompressed) zip of ``files``."""
    buf = io.BytesIO(model_bytes)
    buf.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, payload in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload)  # fixed date: same bytes every export
    return buf.getvalue()


def packed_files(data: bytes) -> dict[str, bytes]:
    """The files packed at the end of a .tflite (empty when there are none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


def strip_files(data: bytes) -> bytes:
    """The flatbuffer part of a .tflite, without a packed zip (unchanged when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        return data
    return data[: min(i.header_offset for i in infos)] if infos else data


# ---- reading --------------------------------------------------------------------------------------------


class _Reader:
    """Field access on one table of the metadata flatbuffer (only what :func:`read` needs)."""

    def __init__(self, buf: bytes, pos: int):
        self.t = Table(buf, pos)

    def _off(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._off(slot)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def scalar(self, slot: int, flags) -> int:
        o = self._off(slot)
        return self.t.Get(flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> "_Reader | None":
        o = self._off(slot)
        return _Reader(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["_Reader"]:
        o = self._off(slot)
        if not o:
            return []
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return [_Reader(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(n)]

    def floats(self, slot: int) -> list[float]:
        o = self._off(slot)
        return [float(v) for v in self.t.GetVectorAsNumpy(flatbuffers.number_types.Float32Flags, o)] if o else []


def _files(reader: _Reader, slot: int) -> list[dict]:
    return [{"name": f.string(0), "type": _FILE_TYPE_NAMES.get(f.scalar(2, flatbuffers.number_types.Int8Flags), "UNKNOWN")} for f in reader.tables(slot)]


def _tensor(t: _Reader) -> dict:
    out = {"name": t.string(0), "description": t.string(1)}
    content = t.table(3)
    if content is not None and content.scalar(0, flatbuffers.number_types.Uint8Flags) == _CONTENT_IMAGE:
        image = content.table(1)
        size = image.table(1) if image else None
        out["image"] = {"color_space": _COLOR_NAMES.get(image.scalar(0, flatbuffers.number_types.Int8Flags), "UNKNOWN") if image else "UNKNOWN",
                        "size": [size.scalar(1, flatbuffers.number_types.Uint32Flags), size.scalar(0, flatbuffers.number_types.Uint32Flags)] if size else None}
    for unit in t.tables(4):
        if unit.scalar(0, flatbuffers.number_types.Uint8Flags) == _UNIT_NORMALIZATION:
            norm = unit.table(1)
            out["normalization"] = {"mean": norm.floats(0), "std": norm.floats(1)}
    stats = t.table(5)
    if stats is not None:
        out["stats"] = {"min": stats.floats(1), "max": stats.floats(0)}
    out["associated_files"] = _files(t, 6)
    return out


def read(buffer: bytes) -> dict:
    """A ``ModelMetadata`` flatbuffer as a dict: name, description, version, author, license,
    min_parser_version, and for each input/output tensor its name, image properties, normalization, stats
    and associated files. Raises ValueError on a buffer that is not TFLite metadata."""
    if len(buffer) < 8 or buffer[4:8] != FILE_IDENTIFIER:
        raise ValueError(f"not a TFLite metadata buffer (identifier {bytes(buffer[4:8])!r}, expected {FILE_IDENTIFIER!r})")
    root = _Reader(buffer, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buffer, 0))
    subgraphs = root.tables(3)
    sub = subgraphs[0] if subgraphs else None
    return {
        "name": root.string(0), "description": root.string(1), "version": root.string(2), "author": root.string(4),
        "license": root.string(5), "min_parser_version": root.string(7),
        "inputs": [_tensor(t) for t in sub.tables(2)] if sub else [],
        "outputs": [_tensor(t) for t in sub.tables(3)] if sub else [],
    }


def attach(data: bytes, meta: ClassifierMetadata) -> bytes:
    """``data`` with ``meta`` as its standard metadata (replacing any) and the labels packed inside; other
    metadata entries and packed files are kept."""
    files = packed_files(data)
    model = flatbuffer.embed_metadata(strip_files(data), METADATA_KEY, build(meta))
    return pack_files(model, {**files, meta.labels_file: labels_text(meta.labels)})


def read_model_metadata(data: bytes) -> dict | None:
    """The standard metadata of a .tflite (see :func:`read`), or None when it has none."""
    buffer = flatbuffer.read_metadata(data, METADATA_KEY)
    return read(buffer) if buffer is not None else None


def missing_for_image_classifier(data: bytes) -> list[str]:
    """What MediaPipe's ImageClassifier needs from a .tflite and this one lacks, each with how to add it
    (empty: it will load). Looks at the input type, the metadata and the packed label file."""
    ins, outs = flatbuffer.io_tensors(data)
    fix = "re-export with edgeopt (edgeopt.export.to_tflite writes it) or run `edgeopt android MODEL`"
    missing = []
    if ins and ins[0].dtype not in ("uint8", "float32"):
        missing.append(f"input tensor is {ins[0].dtype}; ImageClassifier takes uint8 or float32: export with io='uint8' or {fix}")
    meta = read_model_metadata(data)
    if meta is None:
        return [*missing, f"no standard TFLite Metadata (entry {METADATA_KEY}): image properties, normalization and labels are unknown; {fix}"]
    inp = meta["inputs"][0] if meta["inputs"] else {}
    if "image" not in inp:
        missing.append(f"input tensor metadata has no ImageProperties; {fix}")
    if ins and ins[0].dtype == "float32" and "normalization" not in inp:
        missing.append(f"float32 input without NormalizationOptions (mean/std); {fix} with preprocessing=")
    files = packed_files(data)
    out = meta["outputs"][0] if meta["outputs"] else {}
    label_files = [f["name"] for f in out.get("associated_files", []) if f["type"] == "TENSOR_AXIS_LABELS"]
    if not label_files:
        missing.append(f"output has no TENSOR_AXIS_LABELS file: results would carry indices, not class names; {fix}")
    elif label_files[0] not in files:
        missing.append(f"labels file {label_files[0]!r} is named in the metadata but not packed in the .tflite; {fix}")
    elif outs and len(files[label_files[0]].decode().splitlines()) != outs[0].shape[-1]:
        missing.append(f"{label_files[0]} has {len(files[label_files[0]].decode().splitlines())} labels for {outs[0].shape[-1]} outputs")
    return missing
