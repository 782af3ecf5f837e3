"""Model sources besides the zoo: the user's own file, a tf_keras.applications backbone with a new head, and
Keras 3 files bridged to tf_keras. Every source returns a flat tf_keras Functional model (no nested models),
because TF-MOT refuses nested models (prune, cluster and QAT all clone layer by layer).

    model = load_model("my.keras")                       # tf_keras .keras / .h5 / SavedModel dir, or Keras 3 .keras
    model = application_model("MobileNetV2", (96, 96, 3), classes=5, weights="notop.h5", alpha=0.35)
    model = check_model_fits(model, (96, 96, 3), 5, source="folder:/data")

Loading never runs code from the file: the file's layer config is read as JSON first (``config.json`` in a
.keras zip, ``model_config`` in an .h5, ``keras_metadata.pb`` in a SavedModel) and Lambda layers or classes
tf_keras does not know are refused by name unless ``allow_custom_code`` is set.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterator

import numpy as np

from edgeopt._keras import keras, keras3, tf
from edgeopt.models._builder import classifier_head

L = keras.layers
FORMATS = ".keras (saved by tf_keras or Keras 3), .h5 (whole model saved by tf_keras), or a tf_keras SavedModel directory"
_MODEL_CLASSES = ("Functional", "Sequential", "Model")
_KERAS_MODULES = ("keras", "tf_keras")

__all__ = ["APPLICATIONS", "KERAS3_LAYERS", "MODEL_FILE_SUFFIXES", "ModelSourceError", "application_model", "application_normalization", "bridge_keras3", "check_model_fits", "check_model_path",
           "flatten_model", "list_applications", "load_model", "with_input_shape"]


class ModelSourceError(ValueError):
    """A one-line refusal from a model source that names the file, layer or field and what would work."""


# ---- reading a file's layer config without running it ----------------------------------------------------


@dataclass(frozen=True)
class LayerRef:
    """One layer as the file describes it: its name, class and the module the class came from (may be empty)."""

    name: str
    class_name: str
    module: str = ""


def _walk_layers(config: dict) -> Iterator[LayerRef]:
    """Every layer in a serialized model config, nested models and wrapped layers (``config.layer``) included."""
    for entry in (config.get("config") or {}).get("layers") or []:
        cfg = entry.get("config") or {}
        yield LayerRef(str(cfg.get("name", entry.get("name", "?"))), str(entry.get("class_name")), str(entry.get("module") or ""))
        if cfg.get("layers") is not None:
            yield from _walk_layers(entry)
        if isinstance(cfg.get("layer"), dict):
            inner = cfg["layer"]
            yield LayerRef(str((inner.get("config") or {}).get("name", "?")), str(inner.get("class_name")), str(inner.get("module") or ""))


# tf_keras's own wrappers of a TensorFlow API call (``x + y``, ``tf.math.multiply``, ``x[:, 0]`` in a Functional model,
# as in MobileNetV3): their config names the public TensorFlow function, which is looked up by name, not run from the file
_TF_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")


def _builtin(ref: LayerRef) -> bool:
    if ref.module and ref.module.split(".")[0] not in _KERAS_MODULES:
        return False
    return ref.class_name in _MODEL_CLASSES + _TF_OP_LAYERS or isinstance(getattr(L, ref.class_name, None), type)


def _lambda_error(ref: LayerRef, path: str) -> str:
    return (f"{path}: layer {ref.name!r} is a Lambda layer: its code lives in the file and edgeopt does not run it; rewrite it as "
            "a standard layer, or set allow_custom_code = true if you trust the file")


def _custom_error(ref: LayerRef, path: str) -> str:
    return (f"{path}: layer {ref.name!r} has class {ref.class_name!r} that tf_keras does not define; set allow_custom_code = true "
            "and custom_module = \"your.module\" (a module that defines it)")


def _check_layers(refs: list[LayerRef], path: str, allow_custom_code: bool, custom_module: str | None) -> None:
    """Refuse Lambda layers and unknown classes unless the user allowed custom code (and, for classes, named a module)."""
    for ref in refs:
        if ref.class_name == "Lambda" and not allow_custom_code:
            raise ModelSourceError(_lambda_error(ref, path))
        if ref.class_name != "Lambda" and not _builtin(ref) and not (allow_custom_code and custom_module):
            raise ModelSourceError(_custom_error(ref, path))


def _zip_json(path: str, member: str) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(member))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as err:
        raise ModelSourceError(f"{path} is not a readable .keras file ({member}: {err}); save the model with model.save(\"x.keras\")") from None


def _is_keras3_file(path: str) -> bool:
    """A .keras zip written by Keras 3 (metadata.json's keras_version, else its config's module paths)."""
    version = str(_zip_json(path, "metadata.json").get("keras_version", ""))
    if version:
        return version.startswith("3")
    return str(_zip_json(path, "config.json").get("module", "")).startswith("keras.src")


def _h5_config(path: str) -> tuple[dict, str]:
    """(model config, keras_version) of a whole-model .h5 file; an error when it holds weights only."""
    import h5py  # a tf_keras dependency, imported here because only .h5 loading needs it

    with h5py.File(path, "r") as f:
        raw, version = f.attrs.get("model_config"), f.attrs.get("keras_version", "")
    if raw is None:
        raise ModelSourceError(f"{path} holds weights only (no model_config); load it into the same architecture with "
                         "edgeopt.models.create(..., weights=path) or save the whole model with model.save(\"x.keras\")")
    decode = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    return json.loads(decode(raw)), decode(version)


def _savedmodel_refs(path: str) -> list[LayerRef]:
    """Layers listed in a tf_keras SavedModel's keras_metadata.pb (no model is built)."""
    metadata = keras.protobuf.saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString((Path(path) / "keras_metadata.pb").read_bytes())
    refs = []
    for node in metadata.nodes:
        meta = json.loads(node.metadata or "{}")
        if node.identifier in ("_tf_keras_layer", "_tf_keras_model", "_tf_keras_network", "_tf_keras_sequential"):
            refs.append(LayerRef(str(meta.get("name", "?")), str(meta.get("class_name", "?"))))
    return refs


# ---- load_model ------------------------------------------------------------------------------------------


def _custom_objects(custom_module: str | None) -> dict:
    """Layer/Model classes defined in ``custom_module`` plus everything registered with keras.saving."""
    if not custom_module:
        return {}
    try:
        module = importlib.import_module(custom_module)
    except ImportError as err:
        raise ModelSourceError(f"custom_module {custom_module!r} cannot be imported ({err}); put its folder on PYTHONPATH") from None
    found = {name: obj for name, obj in vars(module).items()
             if isinstance(obj, type) and issubclass(obj, L.Layer) and obj.__module__.split(".")[0] not in _KERAS_MODULES}
    return {**found, **keras.saving.get_custom_objects()}


def _load_keras_file(path: str, allow: bool, module: str | None) -> keras.Model:
    _check_layers(list(_walk_layers(_zip_json(path, "config.json"))), path, allow, module)
    if _is_keras3_file(path):
        return _bridge_file(path)
    return keras.models.load_model(path, safe_mode=not allow, compile=False, custom_objects=_custom_objects(module))


def _load_h5(path: str, allow: bool, module: str | None) -> keras.Model:
    config, version = _h5_config(path)
    if version.startswith("3"):
        raise ModelSourceError(f"{path} was saved by Keras {version} as .h5; save it with model.save(\"x.keras\") and load that file")
    _check_layers(list(_walk_layers(config)), path, allow, module)
    return keras.models.load_model(path, compile=False, custom_objects=_custom_objects(module))


def _load_savedmodel(path: str, allow: bool, module: str | None) -> keras.Model:
    if not (Path(path) / "keras_metadata.pb").exists():
        raise ModelSourceError(f"{path} is a SavedModel without Keras metadata (e.g. Keras 3 model.export): it cannot be rebuilt as "
                         "layers; save the model with model.save(\"x.keras\") and load that file")
    _check_layers(_savedmodel_refs(path), path, allow, module)
    return keras.models.load_model(path, compile=False, custom_objects=_custom_objects(module))


_FILE_LOADERS: dict[str, Callable[[str, bool, str | None], keras.Model]] = {".keras": _load_keras_file, ".h5": _load_h5, ".hdf5": _load_h5}
MODEL_FILE_SUFFIXES = tuple(_FILE_LOADERS)


def check_model_path(path: str | os.PathLike, field: str = "model file") -> Path:
    """``path`` as a Path if it names an existing model file (a suffix of :data:`MODEL_FILE_SUFFIXES`) or a directory (a
    SavedModel); else a one-line ValueError starting with ``field`` (a recipe field, so the recipe names its path).
    Cheap: nothing is read, so recipes check it when they are parsed."""
    file = Path(path).expanduser()
    if not (file.is_dir() or file.suffix.lower() in MODEL_FILE_SUFFIXES):
        raise ModelSourceError(f"{field} {os.fspath(path)!r} is not a model file: use a .keras or .h5 file, or a SavedModel directory")
    if not file.exists():
        raise ModelSourceError(f"{field} {os.fspath(path)!r} does not exist")
    return file


def _loader(path: str) -> Callable[[str, bool, str | None], keras.Model]:
    if os.path.isdir(path) and (Path(path) / "saved_model.pb").exists():
        return _load_savedmodel
    suffix = Path(path).suffix.lower()
    if not os.path.isfile(path) or suffix not in _FILE_LOADERS:
        why = "does not exist" if not os.path.exists(path) else "is not a format edgeopt reads"
        raise ModelSourceError(f"model file {path} {why}; formats that work: {FORMATS}")
    return _FILE_LOADERS[suffix]


def load_model(path: str | os.PathLike, *, allow_custom_code: bool = False, custom_module: str | None = None) -> keras.Model:
    """A user's saved model as a flat tf_keras Functional model (not compiled).

    Reads .keras (tf_keras, or Keras 3 through :func:`bridge_keras3`), whole-model .h5 and tf_keras SavedModel
    directories. Lambda layers and unknown classes are refused by name before anything is built; with
    ``allow_custom_code`` Lambda layers load (the file's code runs) and the classes defined in the importable
    module ``custom_module`` are used for custom layers. Nested models are flattened (:func:`flatten_model`).
    """
    path = os.fspath(path)
    if custom_module and not allow_custom_code:
        raise ModelSourceError(f"custom_module {custom_module!r} runs code from that module: set allow_custom_code = true as well")
    load = _loader(path)
    try:
        model = load(path, allow_custom_code, custom_module)
    except ModelSourceError:
        raise
    except (ValueError, TypeError, OSError, KeyError, AttributeError, ImportError) as err:  # Keras' own, often many lines
        raise ModelSourceError(f"Keras could not load {path}: {_one_line(err)}; formats that work: {FORMATS}") from err
    return flatten_model(model)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:400]


# ---- flatten_model -----------------------------------------------------------------------------------------


def _is_graph_model(layer) -> bool:
    return isinstance(layer, keras.Model) and (getattr(layer, "_is_graph_network", False) or isinstance(layer, keras.Sequential))


def _leaf_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if not _is_graph_model(layer)]


def _is_flat(model: keras.Model) -> bool:
    return not isinstance(model, keras.Sequential) and not any(_is_graph_model(layer) for layer in model.layers)


class _Namer:
    """Unique layer names for one flat model: outer names stay, a colliding nested one gets its models' names as prefix."""

    def __init__(self, reserved: list[str]):
        self.used = set(reserved)

    def claim(self, name: str, prefix: str) -> str:
        if prefix and name in self.used:
            name = f"{prefix}_{name}"
        base, n = name, 1
        while prefix and name in self.used:
            name, n = f"{base}_{n}", n + 1
        self.used.add(name)
        return name


@dataclass
class _Flattener:
    """Replays a tf_keras graph on new tensors, calling a copy of each plain layer and recursing into nested models."""

    namer: _Namer
    renamed: dict

    def call(self, layer, args: tuple, kwargs: dict, prefix: str, training):
        if _is_graph_model(layer):
            inner = list(tf.nest.flatten(args[0] if args else kwargs.pop("inputs")))
            outs = self.replay(layer, inner, f"{prefix}_{layer.name}" if prefix else layer.name, kwargs.get("training", training))
            return tf.nest.pack_sequence_as(layer._nested_outputs, outs)
        if training is not None and "training" not in kwargs and getattr(layer, "_expects_training_arg", False):
            kwargs = {**kwargs, "training": training}  # a nested model called with training=False keeps it for its layers
        return self._named(layer, prefix)(*args, **kwargs)

    def _named(self, layer, prefix: str):
        if id(layer) not in self.renamed:  # one copy per layer object, so a layer shared inside the graph stays shared
            self.renamed[id(layer)] = _copy(layer, self.namer.claim(layer.name, prefix))
        return self.renamed[id(layer)]

    def replay(self, model: keras.Model, inputs: list, prefix: str = "", training=None) -> list:
        _refuse_shared_nested(model)
        usage = model._tensor_usage_count
        tensors = {str(id(ref)): [t] * usage[str(id(ref))] for ref, t in zip(model.inputs, inputs)}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                    continue
                args, kwargs = node.map_arguments(tensors)
                outputs = self.call(node.layer, args, dict(kwargs), prefix, training)
                for x_id, y in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                    tensors[x_id] = [y] * usage[x_id]
        return [tensors[str(id(x))].pop() for x in model.outputs]


def _copy(layer, name: str) -> _CallThenCopy:
    """A new layer like ``layer`` called ``name`` that takes ``layer``'s weights once its first call has built it.

    Copies (rather than the same objects called again) keep the flat model independent of its source: training
    it leaves the source alone, and ``get_layer(...).output`` on it names its own graph's tensors.
    """
    try:
        new = type(layer).from_config({**layer.get_config(), "name": name})
    except (TypeError, ValueError, NotImplementedError) as err:
        raise ModelSourceError(f"layer {layer.name!r} ({type(layer).__name__}) cannot be copied from its config ({_one_line(err)}); "
                         "give it a get_config that from_config accepts, or build the model without nesting") from None
    return _CallThenCopy(new, layer.get_weights())


class _CallThenCopy:
    """Calls a renamed layer copy and sets its weights after the first call has built it."""

    def __init__(self, layer, weights: list):
        self.layer, self.weights, self.done = layer, weights, False

    def __call__(self, *args, **kwargs):
        out = self.layer(*args, **kwargs)
        if not self.done:
            self.layer.set_weights(self.weights)
            self.done = True
        return out


def _refuse_shared_nested(model: keras.Model) -> None:
    calls: dict[str, int] = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if _is_graph_model(node.layer):
                calls[node.layer.name] = calls.get(node.layer.name, 0) + 1
    for name, count in calls.items():
        if count > 1:
            raise ModelSourceError(f"nested model {name!r} is called {count} times in {model.name!r} (shared weights); edgeopt can only "
                             "flatten a nested model that is called once: build the graph with separate layers instead")


def _require_graph(model, where: str) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(f"{where} needs a tf_keras.Model, got {type(model).__module__}.{type(model).__name__}; load Keras 3 files with load_model")
    if not _is_graph_model(model) or not model.built or not model.inputs:
        raise TypeError(f"{where} needs a built Functional or Sequential tf_keras model; {model.name!r} ({type(model).__name__}) "
                        "has no known layer graph: rebuild it as keras.Model(inputs, outputs)")


def _replayed(model: keras.Model, inputs: list) -> keras.Model:
    namer = _Namer([*_leaf_names(model), *(getattr(t, "name", "") for t in inputs)])
    outs = _Flattener(namer, {}).replay(model, inputs)
    return keras.Model(inputs, tf.nest.pack_sequence_as(model._nested_outputs, outs), name=model.name)


def _fresh_inputs(model: keras.Model, shape: tuple | None = None) -> list:
    return [keras.Input(shape=shape or tuple(t.shape[1:]), dtype=t.dtype, name=t._keras_history.layer.name) for t in model.inputs]


def flatten_model(model: keras.Model) -> keras.Model:
    """One Functional graph of plain layers computing what ``model`` computes.

    Sequential models and Functional models with nested Functional/Sequential models as layers (a backbone
    used as a layer, at any depth) are rebuilt from copies of their layers with the same weights; a nested
    layer whose name is taken is renamed with its model's name as prefix. Layers keep their call
    arguments (``training=False`` on a nested call reaches its layers). A flat Functional model is returned
    unchanged. A nested model called more than once is an error: flattening would duplicate shared weights.
    """
    _require_graph(model, "flatten_model")
    if _is_flat(model):
        return model
    return _replayed(model, _fresh_inputs(model))


def with_input_shape(model: keras.Model, shape: tuple[int, int, int]) -> keras.Model:
    """``model`` rebuilt on a fixed (height, width, channels) input, with copies of its layers and weights.

    TFLite export needs static shapes; a model saved with ``None`` spatial dimensions gets the data's size.
    """
    _require_graph(model, "with_input_shape")
    if len(model.inputs) != 1:
        raise ModelSourceError(f"with_input_shape needs a model with one input; {model.name!r} has {len(model.inputs)}")
    return _replayed(model, _fresh_inputs(model, tuple(int(v) for v in shape)))


# ---- tf_keras.applications backbones ----------------------------------------------------------------------


@dataclass(frozen=True)
class Application:
    """A tf_keras.applications constructor and the input it expects: model input = (pixel - mean) / std,
    pixels in 0..255 (edgeopt's Preprocessing convention). ``min_size``: smallest side it accepts."""

    constructor: str
    mean: float
    std: float
    min_size: int = 32


# mean=0, std=1: the network rescales 0..255 pixels itself (a Rescaling/Normalization layer inside).
APPLICATIONS: dict[str, Application] = {
    "MobileNet": Application("MobileNet", 127.5, 127.5),
    "MobileNetV2": Application("MobileNetV2", 127.5, 127.5),
    "MobileNetV3Small": Application("MobileNetV3Small", 0.0, 1.0),
    "MobileNetV3Large": Application("MobileNetV3Large", 0.0, 1.0),
    "EfficientNetB0": Application("EfficientNetB0", 0.0, 1.0),
    "EfficientNetB1": Application("EfficientNetB1", 0.0, 1.0),
    "EfficientNetB2": Application("EfficientNetB2", 0.0, 1.0),
    "EfficientNetB3": Application("EfficientNetB3", 0.0, 1.0),
    "EfficientNetV2B0": Application("EfficientNetV2B0", 0.0, 1.0),
    "ResNet50V2": Application("ResNet50V2", 127.5, 127.5),
    "NASNetMobile": Application("NASNetMobile", 127.5, 127.5),
}
# Left out: their pretrained weights expect a per-channel normalization that one mean/std cannot express.
LEFT_OUT = {
    "ResNet50": "caffe-style input (RGB->BGR and per-channel ImageNet means); use ResNet50V2 ([-1, 1] input)",
    "DenseNet121": "torch-style input (per-channel ImageNet mean and std)",
}
_HEAD_RESERVED = ("weights", "include_top", "input_shape", "input_tensor", "classes", "pooling", "classifier_activation")


def list_applications() -> list[str]:
    """Names :func:`application_model` accepts."""
    return sorted(APPLICATIONS)


def _application(name: str) -> Application:
    if name in APPLICATIONS:
        return APPLICATIONS[name]
    why = f" ({name} is left out: {LEFT_OUT[name]})" if name in LEFT_OUT else ""
    raise ModelSourceError(f"unknown application {name!r}{why}; known: {', '.join(list_applications())}")


def application_normalization(application: str) -> tuple[float, float]:
    """(mean, std) in 0..255 pixel units that ``application``'s pretrained weights expect: input = (pixel - mean) / std."""
    app = _application(application)
    return app.mean, app.std


def _backbone(name: str, app: Application, shape: tuple[int, int, int], classes: int, include_top: bool, kwargs: dict) -> keras.Model:
    if min(shape[:2]) < app.min_size:
        raise ModelSourceError(f"{name} needs inputs of at least {app.min_size}x{app.min_size} pixels; got {shape[0]}x{shape[1]}")
    constructor = getattr(keras.applications, app.constructor)
    top = {"classes": classes, "classifier_activation": "softmax"} if include_top else {}
    try:
        return constructor(input_shape=shape, include_top=include_top, weights=None, **top, **kwargs)
    except (ValueError, TypeError) as err:
        raise ModelSourceError(f"{name} refuses input_shape={shape} / {kwargs}: {_one_line(err)}") from None


def _weight_layer_names(path: str) -> set[str]:
    """Layer names stored in a Keras .h5 weights (or whole-model) file."""
    import h5py  # a tf_keras dependency, imported here because only weight files need it

    with h5py.File(path, "r") as f:
        group = f.get("model_weights", f)
        names = group.attrs.get("layer_names", [])
        return {n.decode() if isinstance(n, bytes) else str(n) for n in names}


def _load_backbone_weights(backbone: keras.Model, path: str, include_top: bool) -> None:
    """Load an .h5 weights file by layer name; every weighted backbone layer (except a top classifier) must be in it."""
    if not os.path.isfile(path):
        raise ModelSourceError(f"weights file {path} does not exist; pass a Keras .h5 weights file saved from the same application "
                         "(a 'notop' file for include_top=false); edgeopt downloads nothing")
    if not path.endswith(".h5") or path.endswith(".weights.h5"):
        raise ModelSourceError(f"weights file {path} is not a Keras .h5 weights file (layer names inside); save it with model.save_weights(\"x.h5\")")
    stored = _weight_layer_names(path)
    top = {keras_layer.name for keras_layer in backbone.layers[-1:]} if include_top else set()
    missing = [l.name for l in backbone.layers if l.weights and l.name not in stored and l.name not in top]
    if missing:
        raise ModelSourceError(f"weights file {path} does not fit {backbone.name}: {len(missing)} layer(s) missing, e.g. {missing[:3]}; "
                         "was it saved from the same application, alpha and include_top?")
    try:
        backbone.load_weights(path, by_name=True, skip_mismatch=include_top)
    except (ValueError, OSError) as err:
        raise ModelSourceError(f"weights file {path} does not fit {backbone.name}: {_one_line(err)}") from None


def application_model(application: str, input_shape: tuple[int, int, int], classes: int, *, weights: str | os.PathLike | None = None,
                      include_top: bool = False, dropout: float = 0.2, **application_kwargs) -> keras.Model:
    """A tf_keras.applications backbone (built with weights=None; nothing is downloaded) with a classifier head.

    ``weights``: a Keras .h5 weights file loaded by layer name (a "notop" file for ``include_top=False``, a
    full-model file otherwise, whose classifier is skipped when its class count differs). Without
    ``include_top`` the head is the zoo's: avg_pool, top_dropout (if ``dropout`` > 0), classifier (Dense,
    logits) and predictions (softmax). ``application_kwargs`` go to the constructor (e.g. ``alpha=0.35``).
    The result is one flat Functional model; feed it inputs normalized with :func:`application_normalization`.
    """
    app = _application(application)
    bad = sorted(set(application_kwargs) & set(_HEAD_RESERVED))
    if bad:
        raise ModelSourceError(f"application_model sets {', '.join(bad)} itself; pass input_shape, classes, weights, include_top as its own arguments")
    shape = tuple(int(v) for v in input_shape)
    backbone = _backbone(application, app, shape, int(classes), include_top, application_kwargs)
    if weights is not None:
        _load_backbone_weights(backbone, os.fspath(weights), include_top)
    if include_top:
        return flatten_model(backbone)
    x = classifier_head(backbone.output, int(classes), dropout)
    return flatten_model(keras.Model(backbone.input, x, name=application.lower()))


# ---- does the model fit the data ---------------------------------------------------------------------------


def check_model_fits(model: keras.Model, input_shape: tuple[int, int, int], classes: int, source: str, *,
                     class_names: tuple[str, ...] = (), model_source: str | None = None) -> keras.Model:
    """``model`` if its input is (height, width, channels) of the data and it outputs ``classes`` scores; a model
    with None height/width is rebuilt on the data's size (:func:`with_input_shape`). Otherwise a one-line
    ValueError naming the model (``model_source``, default its name) and the data ``source``."""
    who = model_source or model.name
    got_in, got_out = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    want = tuple(int(v) for v in input_shape)
    if len(got_out) != 1 or got_out[0] != classes:
        names = f" (class names {', '.join(class_names[:5])}{', ...' if len(class_names) > 5 else ''})" if class_names else ""
        raise ModelSourceError(f"model {who} outputs {got_out[-1] if got_out else '?'} classes (output shape {got_out}) but dataset {source} has "
                         f"{classes}{names}; give it a new head for these classes (recipe: [model] new_head = true, then a finetune stage; "
                               "API: edgeopt.new_head(model, classes))")
    if len(got_in) != 3 or any(g is not None and g != w for g, w in zip(got_in, want)):
        raise ModelSourceError(f"model {who} takes input (H, W, C) = {got_in} but dataset {source} gives {want}; set the data's image_size "
                         "and channels to the model's, or rebuild the model for the data")
    return with_input_shape(model, want) if None in got_in else model


# ---- Keras 3 bridge ------------------------------------------------------------------------------------------

# Keras 3 activation name -> builder of the same function from standard tf_keras layers (x, layer name) -> tensor.
# tf_keras has no relu6, silu or hard_silu activation functions, so those become layers.
_ACTIVATIONS: dict[str, Callable] = {
    "linear": lambda x, name: L.Activation("linear", name=name)(x),
    "relu": lambda x, name: L.Activation("relu", name=name)(x),
    "relu6": lambda x, name: L.ReLU(6.0, name=name)(x),
    "sigmoid": lambda x, name: L.Activation("sigmoid", name=name)(x),
    "softmax": lambda x, name: L.Activation("softmax", name=name)(x),
    "tanh": lambda x, name: L.Activation("tanh", name=name)(x),
    "swish": lambda x, name: L.Activation("swish", name=name)(x),
    "silu": lambda x, name: L.Activation("swish", name=name)(x),
    "hard_swish": lambda x, name: _hard_swish(x, name),
    "hard_silu": lambda x, name: _hard_swish(x, name),
}
_NATIVE_ACTIVATIONS = {"linear": "linear", "relu": "relu", "sigmoid": "sigmoid", "softmax": "softmax", "tanh": "tanh", "swish": "swish", "silu": "swish"}


def _hard_swish(x, name: str):
    """x * relu6(x + 3) / 6 as Rescaling, ReLU(6), Rescaling, Multiply (the TFLite converter fuses it into HARD_SWISH)."""
    gate = L.Rescaling(1.0, offset=3.0, name=f"{name}_plus3")(x)
    gate = L.ReLU(6.0, name=f"{name}_relu6")(gate)
    gate = L.Rescaling(1.0 / 6.0, name=f"{name}_div6")(gate)
    return L.Multiply(name=name)([x, gate])


# Keras 3 layer classes the bridge rebuilds; each maps to the tf_keras class of the same name.
KERAS3_LAYERS = ("Activation", "Add", "AveragePooling2D", "BatchNormalization", "Concatenate", "Conv2D", "Dense", "DepthwiseConv2D",
                 "Dropout", "Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "InputLayer", "MaxPooling2D", "Multiply",
                 "Normalization", "ReLU", "Rescaling", "Reshape", "SeparableConv2D", "ZeroPadding2D")
_BASE_KWARGS = {"name", "trainable", "dtype", "activity_regularizer"}
_DROP_IF_EMPTY = {"quantization_config", "lora_rank", "lora_alpha", "input_axes", "output_axes"}


def _dtype_name(value) -> str:
    """A Keras 3 dtype (a DTypePolicy dict or a name) as the policy name tf_keras takes."""
    if isinstance(value, dict):
        return str((value.get("config") or {}).get("name", "float32"))
    return str(getattr(value, "name", value or "float32"))


def _accepted(cls) -> set[str]:
    params = {p for klass in cls.__mro__ if issubclass(klass, L.Layer) for p in inspect.signature(klass.__init__).parameters}
    return params | _BASE_KWARGS


def _tf_config(layer, cls, where: str) -> dict:
    """The Keras 3 layer's config in tf_keras terms: dtype policy as a name, initializers dropped (weights are
    copied), regularizers/constraints as plain class_name/config, Keras-3-only fields dropped when unused."""
    cfg, accepted, out = layer.get_config(), _accepted(cls), {}
    for key, value in cfg.items():
        if key == "dtype":
            out[key] = _dtype_name(value)
        elif key.endswith("_initializer"):
            continue
        elif key in accepted:
            out[key] = {"class_name": value["class_name"], "config": value.get("config", {})} if isinstance(value, dict) and "class_name" in value else value
        elif key in _DROP_IF_EMPTY or not value:
            continue
        else:
            raise ModelSourceError(f"{where}: Keras 3 layer {layer.name!r} ({type(layer).__name__}) sets {key}={value!r}, which tf_keras "
                             f"{cls.__name__} does not have; remove it or save the model from tf_keras")
    return out


def _activation_fn(name, layer, where: str) -> Callable:
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        raise ModelSourceError(f"{where}: layer {layer.name!r} uses activation {name!r}, which the Keras 3 bridge does not translate; "
                         f"supported: {', '.join(sorted(_ACTIVATIONS))}")
    return _ACTIVATIONS[name]


@dataclass
class _Bridge:
    """Rebuilds a Keras 3 graph in tf_keras: each Keras 3 layer becomes a tf_keras layer with its weights."""

    namer: _Namer
    where: str

    def call(self, op, args: tuple, kwargs: dict, prefix: str, training):
        if hasattr(op, "_nodes_by_depth") or getattr(op, "_functional", None) is not None:
            graph = getattr(op, "_functional", None) or op
            inner = list(tf.nest.flatten(args[0] if args else kwargs.pop("inputs")))
            outs = self.replay(graph, inner, f"{prefix}_{op.name}" if prefix else op.name, kwargs.get("training", training))
            return outs[0] if len(outs) == 1 else outs
        kwargs = {k: v for k, v in kwargs.items() if k in ("training",)}
        if training is not None and "training" not in kwargs and type(op).__name__ in ("BatchNormalization", "Dropout"):
            kwargs["training"] = training
        return self.layer(op, args, kwargs, self.namer.claim(op.name, prefix))

    def layer(self, op, args: tuple, kwargs: dict, name: str):
        kind = type(op).__name__
        if kind == "Activation":
            return _activation_fn(op.get_config()["activation"], op, self.where)(args[0], name)
        if kind == "Normalization":
            mean, var = (np.asarray(v, np.float32).reshape(op._mean_and_var_shape) for v in (op.mean, op.variance))
            return L.Normalization(axis=op.axis, mean=mean, variance=var, invert=op.invert, name=name)(*args)
        cls = getattr(L, kind)
        cfg = {**_tf_config(op, cls, self.where), "name": name}
        act = cfg.get("activation")
        if act is not None and act not in _NATIVE_ACTIVATIONS:
            _activation_fn(act, op, self.where)  # refuse before building anything
            cfg["activation"] = "linear"
        elif act is not None:
            cfg["activation"] = _NATIVE_ACTIVATIONS[act]
        new = cls.from_config(cfg)
        out = new(*args, **kwargs)
        _copy_weights(op, new, self.where)
        return out if act is None or act in _NATIVE_ACTIVATIONS else _ACTIVATIONS[act](out, self.namer.claim(f"{name}_act", ""))

    def replay(self, model, inputs: list, prefix: str = "", training=None) -> list:
        tensors = {id(ref): t for ref, t in zip(model.inputs, inputs)}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if not node.operation or node.is_input or any(id(x) not in tensors for x in node.input_tensors):
                    continue
                args, kwargs = node.arguments.fill_in(tensors)
                outputs = self.call(node.operation, tuple(args), dict(kwargs), prefix, training)
                for x, y in zip(node.outputs, tf.nest.flatten(outputs)):
                    tensors[id(x)] = y
        return [tensors[id(x)] for x in model.outputs]


def _copy_weights(k3_layer, tf_layer, where: str) -> None:
    values = [np.asarray(w) for w in k3_layer.get_weights()]
    shapes = [tuple(w.shape) for w in tf_layer.weights]
    if [v.shape for v in values] != shapes:
        raise ModelSourceError(f"{where}: Keras 3 layer {k3_layer.name!r} has weights {[v.shape for v in values]} but its tf_keras "
                         f"rebuild expects {shapes}; save the model from tf_keras")
    tf_layer.set_weights(values)


def _refuse_unbridgeable(config: dict, path: str) -> None:
    for ref in _walk_layers(config):
        if ref.class_name not in KERAS3_LAYERS and ref.class_name not in _MODEL_CLASSES:
            raise ModelSourceError(f"{path}: Keras 3 layer {ref.name!r} has class {ref.class_name}, which the Keras 3 bridge does not "
                             f"rebuild (supported: {', '.join(KERAS3_LAYERS)}); replace it, or build and save the model with tf_keras")


def bridge_keras3(path: str | os.PathLike) -> keras.Model:
    """A Keras 3 ``.keras`` file rebuilt as a flat tf_keras Functional model with the same weights and outputs.

    The file's config.json is checked first (Lambda layers, custom classes and layers outside
    :data:`KERAS3_LAYERS` are refused by name); then Keras 3 loads it with ``safe_mode=True`` and each of its
    layers (nested models included, flattened) is rebuilt in tf_keras and given the Keras 3 weights.
    """
    path = os.fspath(path)
    _check_layers(list(_walk_layers(_zip_json(path, "config.json"))), path, False, None)
    return _bridge_file(path)


def _bridge_file(path: str) -> keras.Model:
    _refuse_unbridgeable(_zip_json(path, "config.json"), path)
    source = keras3().saving.load_model(path, safe_mode=True, compile=False)
    graph = getattr(source, "_functional", None) or source
    inputs = [keras.Input(shape=tuple(x.shape[1:]), dtype=x.dtype, name=_k3_input_name(x)) for x in graph.inputs]
    namer = _Namer([layer.name for layer in source.layers if not hasattr(layer, "_nodes_by_depth") and not hasattr(layer, "_functional")]
                   + [t.name for t in inputs])
    outs = _Bridge(namer, path).replay(graph, inputs)
    return keras.Model(inputs, outs[0] if len(outs) == 1 else outs, name=source.name)


def _k3_input_name(tensor) -> str:
    history = getattr(tensor, "_keras_history", None)
    return history.operation.name if history is not None else "input"
