"""Export: modes, verification, manifest (sidecar + embedded), labels, atomic writes, op report, errors."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edgeopt import export, models
from edgeopt.tflite import metadata
from edgeopt.tflite.flatbuffer import InvalidModelError, io_tensors
from conftest import TINY_MODELS, agreement, assert_tflite_matches_keras, top1


@pytest.fixture(scope="module")
def splits(digits_splits):
    return digits_splits


@pytest.fixture(scope="module")
def model(trained_tiny):
    return trained_tiny("mobilenet_v2_tiny")


@pytest.fixture(scope="module")
def int8(exported):
    return exported("int8")


@pytest.fixture(scope="module")
def float32(exported):
    return exported("float32")


# ---- int8 -------------------------------------------------------------------------------------------


def test_int8_has_uint8_io_by_default_and_only_integer_ops(int8):
    ins, outs = io_tensors(int8.model_bytes)
    assert [t.dtype for t in ins + outs] == ["uint8", "uint8"]  # raw camera bytes in (Android's default)
    assert int8.manifest["io"] == "uint8" and "uint8 input and output" in int8.manifest["mode_description"]
    assert int8.op_report.op_counts["QUANTIZE"] == 2  # uint8 -> int8 in front, int8 -> uint8 at the end
    assert int8.op_report.all_integer, int8.op_report.to_markdown()
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED"} <= set(int8.op_report.op_counts)
    assert int8.manifest["ops"]["float_ops"] == []


def test_int8_agrees_with_keras_on_the_digits_test_split(model, splits, int8):
    x, y = splits.arrays("test")
    keras_out = model(x, training=False).numpy()
    tflite_out = export.run_tflite(int8.model_bytes, x)
    agree = agreement(keras_out, tflite_out)
    assert agree >= 0.97, agree
    assert top1(tflite_out, y) > 0.8  # chance is 0.1
    v = int8.verification
    assert v.samples == splits.sizes["val"]
    assert v.top1_agreement == int8.manifest["verified_agreement"] >= 0.9
    assert 0 < v.mean_abs_diff < 0.05 and v.max_abs_diff >= v.mean_abs_diff
    assert int8.calibration.samples == 200 and int8.calibration.seconds > 0


def test_manifest_describes_the_io_tensors_and_preprocessing(int8, splits, model):
    m = int8.manifest
    ins, outs = io_tensors(int8.model_bytes)
    assert m["input"] == {**ins[0].to_dict(), "feed": m["input"]["feed"]} and m["output"]["scale"] == outs[0].scale
    assert m["input"]["shape"] == [1, 16, 16, 3] and m["input"]["dtype"] == "uint8" and m["input"]["feed"].startswith("raw RGB bytes")
    assert m["input"]["scale"] == pytest.approx(1 / 127.5) and m["input"]["zero_point"] == 128  # pixel p is the input byte
    assert m["output"]["scale"] == pytest.approx(1 / 256) and m["output"]["zero_point"] == 0  # softmax output, uint8
    assert m["preprocessing"]["mean"] == 127.5 and m["preprocessing"]["image_size"] == [16, 16]
    assert m["labels"] == list(splits.preprocessing.class_names)
    assert m["source_model"]["name"] == "mobilenet_v2_tiny" and m["source_model"]["params"] == model.count_params()


def test_files_manifest_and_embedded_manifest_agree(int8):
    path = int8.path
    data = path.read_bytes()
    assert data == int8.model_bytes
    sidecar = json.loads(export.manifest_path(path).read_text())
    assert sidecar == int8.manifest == export.read_manifest(path)
    assert sidecar["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert sidecar["file"]["size_bytes"] == len(data) > sidecar["file"]["gzip_bytes"]
    assert (path.parent / "labels.txt").read_text().splitlines() == sidecar["labels"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["digits_int8.json", "digits_int8.tflite", "labels.txt"]  # no temp files left


def test_embedding_the_manifest_keeps_the_model_running(int8, splits):
    x, _ = splits.arrays("test", limit=8)
    out = export.run_tflite(int8.path.read_bytes(), x)
    assert out.shape == (8, 10) and np.allclose(out.sum(1), 1, atol=0.05)


def test_embedding_writes_each_distinct_shape_and_zero_point_vector_once(int8):
    from edgeopt.tflite.flatbuffer import vector_storage

    storage = vector_storage(int8.model_bytes)
    for field in ("shape", "zero_point"):
        places, distinct, vectors = storage[field]
        assert places == distinct < vectors, (field, storage[field])


def test_quantize_helpers_round_trip_with_the_manifest_parameters(int8, splits):
    x, _ = splits.arrays("test", limit=4)
    params = int8.manifest["input"]
    q = export.quantize_input(x, params)
    assert q.dtype == np.uint8
    back = export.dequantize_output(q, params)
    assert np.abs(back - x).max() <= params["scale"] / 2 + 1e-6
    assert export.dequantize_output(np.array([0, 255], np.uint8), int8.manifest["output"]) == pytest.approx([0.0, 255 / 256])


def test_existing_file_is_never_overwritten_silently(model, int8, splits):
    before = int8.path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.to_tflite(model, "int8", splits, path=int8.path)
    assert int8.path.read_bytes() == before


def test_write_atomic_refuses_then_replaces(tmp_path):
    from edgeopt.io import write_atomic

    target = tmp_path / "a.bin"
    write_atomic(target, b"one")
    with pytest.raises(FileExistsError):
        write_atomic(target, b"two")
    assert target.read_bytes() == b"one"
    write_atomic(target, b"three", overwrite=True)
    assert target.read_bytes() == b"three"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


# ---- float32 and the op report -------------------------------------------------------------------------


def test_float32_matches_keras_and_its_ops_are_float(model, splits, float32):
    x, _ = splits.arrays("test", limit=16)
    assert_tflite_matches_keras(model, float32.model_bytes, x, atol=1e-4)
    assert float32.verification.top1_agreement == 1.0
    assert not float32.op_report.all_integer and "CONV_2D" in float32.op_report.float_op_names
    assert float32.manifest["input"]["dtype"] == "float32" and float32.manifest["calibration"] is None


def test_int8_file_is_much_smaller_than_float32(int8, float32):
    assert len(int8.model_bytes) < 0.4 * len(float32.model_bytes)


def test_sparse_weights_store_a_pruned_kernel_in_fewer_bytes():
    from edgeopt._keras import keras

    inp = keras.Input((64,))
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Dense(512, activation="relu")(inp)))
    kernel, bias = model.layers[1].get_weights()
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.9)] = 0.0  # 90% zeros, as after pruning
    model.layers[1].set_weights([kernel, bias])
    dense = export.convert(model, "float32")
    sparse = export.convert(model, "float32", sparse_weights=True)
    assert len(sparse) < 0.5 * len(dense)  # 32,768 float32 weights -> ~3,300 values plus indices
    x = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    np.testing.assert_allclose(export.run_tflite(sparse, x), export.run_tflite(dense, x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(export.run_tflite(dense, x), model(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["float16", "dynamic", "int16x8"])
def test_other_modes_convert_and_agree(mode, float32, exported):
    art = exported(mode)
    assert art.verification.top1_agreement >= 0.97
    ins, outs = io_tensors(art.model_bytes)
    assert ins[0].dtype == outs[0].dtype == "float32"
    kernels = {e.kernel for e in art.op_report.entries}
    expected = {"float16": "DEQUANTIZE", "dynamic": None, "int16x8": None}[mode]
    if mode == "int16x8":
        assert "int16x8" in kernels
    if mode == "dynamic":
        assert "hybrid" in kernels
    if expected:
        assert expected in art.op_report.op_counts
    assert len(art.model_bytes) < 0.7 * len(float32.model_bytes)


def _int8_of(name: str, side: int = 32):
    model = models.create(name, input_shape=(side, side, 3), classes=10)
    rep = np.random.default_rng(0).uniform(-1, 1, (32, side, side, 3)).astype(np.float32)
    return export.to_tflite(model, "int8", rep, num_calibration=32, num_verify=0)


# efficientnet_tiny (swish, squeeze-excite) in the quick suite; the other families' conversions with -m slow
@pytest.mark.parametrize("name", [n if n == "efficientnet_tiny" else pytest.param(n, marks=pytest.mark.slow) for n in TINY_MODELS])
def test_every_tiny_family_int8_export_is_fully_integer(name):
    art = _int8_of(name)
    ins, outs = io_tensors(art.model_bytes)
    assert ins[0].dtype == outs[0].dtype == "uint8"
    assert art.op_report.float_ops == [], art.op_report.to_markdown()
    assert art.verification is None and art.manifest["verified_agreement"] is None


@pytest.mark.slow  # 14 s: converts once more the slow way; every default export test checks the files against Keras
def test_converting_without_keras_saving_machinery_gives_the_same_bytes(model, splits, monkeypatch):
    """The converter saves only the model's variables beside the traced function (export._variables_of), not the
    Keras model: the file must be the one converting with the Keras model gives, byte for byte."""
    calibration = splits.arrays("train", limit=16)[0]
    fast = export.convert(model, "int8", calibration)
    monkeypatch.setattr(export, "_variables_of", lambda m: m)  # what TFLiteConverter.from_keras_model saves
    assert export.convert(model, "int8", calibration) == fast


# ---- errors -----------------------------------------------------------------------------------------------


def test_bad_calibration_fails_verification_and_writes_nothing(model, splits, tmp_path):
    x, _ = splits.arrays("val")
    constant = np.zeros((4, 16, 16, 3), np.float32)  # calibrating on blank images clips every real activation
    with pytest.raises(export.ExportVerificationError, match="agrees with the Keras model on only"):
        export.to_tflite(model, "int8", constant, verify_data=x, path=tmp_path / "bad.tflite", min_agreement=0.98)
    assert list(tmp_path.iterdir()) == []


def test_wrong_input_size_is_a_clear_error(model, float32):
    from edgeopt.data import load_dataset

    wrong = load_dataset("digits", image_size=8, channels=1, limit_train=64)
    with pytest.raises(ValueError, match=r"wrong input size: .*\(8, 8, 1\).*expects \(16, 16, 3\)"):
        export.to_tflite(model, "int8", wrong)
    with pytest.raises(ValueError, match="wrong input size"):
        export.run_tflite(float32.model_bytes, np.zeros((1, 8, 8, 1), np.float32))


def test_argument_errors(model):
    with pytest.raises(ValueError, match="mode must be one of float32, float16, dynamic, int8, int16x8, int4"):
        export.to_tflite(model, "int2")
    with pytest.raises(ValueError, match="needs representative_data"):
        export.to_tflite(model, "int8")
    with pytest.raises(ValueError, match="min_agreement"):
        export.to_tflite(model, "int8", min_agreement=98)
    with pytest.raises(ValueError, match="must end in .tflite"):
        export.to_tflite(model, "float32", path="model.bin")
    with pytest.raises(ValueError, match="uint8 pixels; pass preprocessing"):
        export.to_tflite(model, "int8", np.zeros((4, 16, 16, 3), np.uint8))
    with pytest.raises(TypeError, match="tf_keras"):
        export.to_tflite(object(), "float32")


def test_truncated_or_corrupted_model_is_a_clear_error(int8, tmp_path):
    data = int8.model_bytes
    flat = len(metadata.strip_files(data))  # the flatbuffer; the labels zip follows it
    for bad in (b"", data[:12], data[: len(data) // 2], data[: flat - 40]):
        with pytest.raises(InvalidModelError, match="not a .tflite model|truncated or corrupted"):
            export.read_manifest(bad)
        with pytest.raises(InvalidModelError):
            export.run_tflite(bad, np.zeros((1, 16, 16, 3), np.float32))
    # cut in the packed labels: the model still runs, and what MediaPipe would miss is named
    assert any("labels.txt" in m and "not packed" in m for m in metadata.missing_for_image_classifier(data[:-40]))
    wrong_id = data[:4] + b"XXXX" + data[8:]
    with pytest.raises(InvalidModelError, match="file identifier"):
        export.read_manifest(wrong_id)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.read_manifest(tmp_path / "missing.tflite")


def test_model_without_manifest_says_so(float32):
    with pytest.raises(ValueError, match="no embedded edgeopt manifest"):
        export.read_manifest(_without_manifest(float32.model_bytes))


def _without_manifest(data: bytes) -> bytes:
    from edgeopt.tflite.flatbuffer import metadata_names, read_model, write_model

    assert "edgeopt_manifest" in metadata_names(data)
    m = read_model(data)
    m.metadata = [e for e in m.metadata if e.name not in (b"edgeopt_manifest", "edgeopt_manifest")]
    stripped = write_model(m)
    assert "edgeopt_manifest" not in metadata_names(stripped)
    return stripped


# ---- the must-show on Fashion-MNIST ------------------------------------------------------------------


@pytest.mark.slow
def test_fashion_mnist_tiny_mobilenet_v2_int8_agrees_with_keras_on_98_percent(tmp_path):
    from edgeopt.data import load_dataset
    from edgeopt.train import TrainConfig, evaluate, fit

    # a short training (20,000 images, 3 epochs) still agrees on 98%: an undertrained model has many near-ties
    splits = load_dataset("fashion_mnist", image_size=32, channels=3, batch_size=128, limit_train=20000, limit_test=2000)
    model = models.create("mobilenet_v2", input_shape=(32, 32, 3), classes=10, alpha=0.35)
    fit(model, splits, TrainConfig(epochs=3, learning_rate=3e-3, verbose=2))
    keras_top1 = evaluate(model, splits.test)["top1"]
    art = export.to_tflite(model, "int8", splits, verify_data=splits.test, num_verify=2000, path=tmp_path / "fmnist_int8.tflite")
    v = art.verification
    print(f"Fashion-MNIST test: keras top-1 {keras_top1:.4f}, int8 top-1 {v.tflite_top1:.4f}, agreement {v.top1_agreement:.4f} on {v.samples}")
    assert v.samples == 2000
    assert keras_top1 > 0.6  # trained on real data, chance is 0.1
    assert v.top1_agreement >= 0.98
