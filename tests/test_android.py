"""Artifacts Android's standard APIs load as they are: uint8 I/O, TFLite Metadata with labels inside, MediaPipe's
ImageClassifier as the judge, MediaPipe's resizing, the deployability report, and the errors a user meets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeopt import bench, export, keras, tf
from edgeopt.cli import main as cli
from edgeopt.data import raw_test_split, resize_like_mediapipe
from edgeopt.tflite import flatbuffer, interface, metadata
from edgeopt.tflite.inspect import arena_bytes, inspect_model
from conftest import agreement

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(trained_tiny):
    return trained_tiny("mobilenet_v2_tiny")


@pytest.fixture(scope="module")
def uint8_art(exported):
    return exported("int8")  # io defaults to uint8


@pytest.fixture(scope="module")
def int8_io_art(model, digits_splits, tmp_path_factory):
    return export.to_tflite(model, "int8", digits_splits, io="int8", num_calibration=200, min_agreement=0.9,
                            path=tmp_path_factory.mktemp("int8io") / "digits_int8io.tflite")


# ---- the metadata itself ----------------------------------------------------------------------------


def test_metadata_buffer_parses_with_mediapipes_own_schema_module():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    meta = metadata.ClassifierMetadata(name="m", labels=("a", "b", "c"), image_size=(24, 32), mean=127.5, std=127.5,
                                       input_range=(-1.0, 1.0), description="d", version="v1", author="me", license="Apache-2.0")
    buf = metadata.build(meta)
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    theirs = schema.ModelMetadataT.InitFromPackedBuf(buf, 0)  # mediapipe's own generated reader
    assert (theirs.name, theirs.description, theirs.version, theirs.author, theirs.license) == (b"m", b"d", b"v1", b"me", b"Apache-2.0")
    tin = theirs.subgraphMetadata[0].inputTensorMetadata[0]
    assert tin.content.contentPropertiesType == schema.ContentProperties.ImageProperties
    assert tin.content.contentProperties.colorSpace == schema.ColorSpaceType.RGB
    assert (tin.content.contentProperties.defaultSize.width, tin.content.contentProperties.defaultSize.height) == (32, 24)
    assert tin.processUnits[0].optionsType == schema.ProcessUnitOptions.NormalizationOptions
    assert list(tin.processUnits[0].options.mean) == [127.5] * 3 and list(tin.processUnits[0].options.std) == [127.5] * 3
    files = theirs.subgraphMetadata[0].outputTensorMetadata[0].associatedFiles
    assert [(f.name, f.type) for f in files] == [(b"labels.txt", schema.AssociatedFileType.TENSOR_AXIS_LABELS)]
    ours = metadata.read(buf)  # edgeopt's own reader agrees
    assert ours["inputs"][0]["normalization"] == {"mean": [127.5] * 3, "std": [127.5] * 3}
    assert ours["inputs"][0]["image"] == {"color_space": "RGB", "size": [24, 32]}


def test_labels_are_packed_inside_and_the_flatbuffer_is_untouched(uint8_art):
    data = uint8_art.model_bytes
    files = metadata.packed_files(data)
    assert files == {"labels.txt": "".join(f"{n}\n" for n in uint8_art.manifest["labels"]).encode()}
    assert uint8_art.path.parent.joinpath("labels.txt").read_bytes() == files["labels.txt"]
    bare = metadata.strip_files(data)
    assert len(bare) < len(data) and flatbuffer.read_metadata(bare, metadata.METADATA_KEY) is not None
    assert export.read_manifest(data)["metadata"]["packed_files"] == ["labels.txt"]


# ---- MediaPipe's ImageClassifier is the judge -------------------------------------------------------


def _bench_top1(path) -> float:
    test, _ = bench.load_test_data(path, "digits")
    return bench.evaluate_tflite(path, test).top1


# float32 is slow-marked (22 s, mostly its own export): its metadata is packed by the same code as the int8 file's
@pytest.mark.parametrize("mode", ["int8", pytest.param("float32", marks=pytest.mark.slow)])
def test_export_loads_in_mediapipe_names_classes_and_matches_bench(exported, mode):
    art = exported(mode)
    missing = metadata.missing_for_image_classifier(art.model_bytes)
    assert missing == []
    images, labels, _ = raw_test_split("digits", 40)
    with bench.mediapipe_classifier(art.path, max_results=3) as classifier:
        top = bench.classify(classifier, images)
    assert all(name == art.manifest["labels"][index] for t in top for index, name, _ in t)  # names from the packed labels
    scores = [t[0][2] for t in top]
    assert all(0 <= s <= 1.0001 for s in scores)  # probabilities (the tiny model ends in softmax), dequantized
    app = bench.evaluate_mediapipe(art.path, "digits")
    litert = _bench_top1(art.path)
    assert app.samples == 359 and app.runtime == "mediapipe"
    assert app.top1 > 0.8  # digits: chance is 0.1
    assert abs(app.top1 - litert) <= 0.005, (app.top1, litert)  # at most 1 of 359 images apart


def test_uint8_file_agrees_with_keras_as_the_int8_file_does(model, digits_arrays, uint8_art, int8_io_art):
    x, _ = digits_arrays["test"]
    keras_out = model(x, training=False).numpy()
    u8, i8 = export.run_tflite(uint8_art.model_bytes, x), export.run_tflite(int8_io_art.model_bytes, x)
    assert flatbuffer.io_tensors(int8_io_art.model_bytes)[0][0].dtype == "int8"
    assert abs(agreement(keras_out, u8) - agreement(keras_out, i8)) <= 0.003
    # The same top class on every image but at most one: the float -> uint8 and float -> int8 input quantizers may
    # round a value that lies half-way between two codes differently, by CPU kernel (CI, 2026-12-03: 1 of 359).
    assert int((u8.argmax(-1) != i8.argmax(-1)).sum()) <= 1
    assert np.abs(u8 - i8).mean() <= 0.005  # the same scores but where an input code differs, not a different model


def test_retype_io_is_an_exact_requantization(int8_io_art, digits_arrays):
    data = metadata.strip_files(int8_io_art.model_bytes)
    u8 = interface.retype_io(data, "uint8")
    assert interface.io_dtypes(u8) == ("uint8", "uint8")
    x, _ = digits_arrays["test"]
    assert np.array_equal(export.run_tflite(data, x[:64]), export.run_tflite(u8, x[:64]))
    with pytest.raises(ValueError, match="only int8 -> uint8"):
        interface.retype_io(u8, "int8")


def test_mediapipe_resizes_as_edgeopt_does():
    """A probe model whose output is its input shows the tensor MediaPipe feeds after its own resize."""
    h = w = 12
    inp = keras.Input((h, w, 3), batch_size=1)
    probe = keras.Model(inp, keras.layers.Reshape((h * w * 3,))(inp))
    data = tf.lite.TFLiteConverter.from_keras_model(probe).convert()
    data = metadata.attach(data, metadata.ClassifierMetadata(name="probe", labels=tuple(map(str, range(h * w * 3))), image_size=(h, w),
                                                             mean=0.0, std=1.0, input_range=(0.0, 255.0)))
    import mediapipe as mp

    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    with bench.mediapipe_classifier(data, max_results=-1) as classifier:
        categories = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image)).classifications[0].categories
    seen = np.zeros(h * w * 3)
    for c in categories:
        seen[c.index] = c.score
    seen = seen.reshape(h, w, 3)
    ours = resize_like_mediapipe(image[None].astype(np.float32), (h, w)).numpy()[0]
    half_pixel = tf.image.resize(image[None].astype(np.float32), (h, w), "bilinear").numpy()[0]
    assert np.abs(seen - ours).mean() < 1.5, np.abs(seen - ours).mean()
    assert np.abs(seen - half_pixel).mean() > 3 * np.abs(seen - ours).mean()


# ---- existing files and the deployability report -----------------------------------------------------


def test_make_android_ready_upgrades_an_int8_io_file_without_changing_its_outputs(int8_io_art, tmp_path, digits_arrays):
    before = metadata.missing_for_image_classifier(metadata.strip_files(int8_io_art.model_bytes))
    assert any("input tensor is int8" in m for m in before)
    art = export.make_android_ready(int8_io_art.path, path=tmp_path / "model.tflite", info=export.ModelInfo("digits", version="3"))
    assert art.manifest["io"] == "uint8" and art.manifest["android_ready_from"]["outputs"] == "identical"
    assert metadata.missing_for_image_classifier(art.model_bytes) == []
    assert metadata.read_model_metadata(art.model_bytes)["version"] == "3"
    x, _ = digits_arrays["test"]
    assert np.array_equal(export.run_tflite(art.model_bytes, x[:32]), export.run_tflite(int8_io_art.model_bytes, x[:32]))
    with pytest.raises(FileExistsError):
        export.make_android_ready(int8_io_art.path, path=tmp_path / "model.tflite")


def test_inspect_reports_ops_runtime_gpu_memory_and_metadata(uint8_art, capsys):
    report = inspect_model(uint8_art.path)
    ops = {o.op: o for o in report.ops}
    assert ops["QUANTIZE"].count == 2 and ops["QUANTIZE"].version == 2
    assert ops["CONV_2D"].count == uint8_art.op_report.op_counts["CONV_2D"]
    assert report.min_runtime_version and report.min_runtime_version[0].isdigit()
    assert report.gpu_compatible and all(o.gpu_compatible for o in report.ops)
    # the biggest activation (16x16 input, widest expansion) fits; all non-constant tensors at once would be more
    assert 16 * 16 * 3 < report.arena_bytes == arena_bytes(uint8_art.model_bytes)
    assert report.metadata["inputs"][0]["image"]["color_space"] == "RGB" and report.missing_for_mediapipe == []
    deploy = uint8_art.manifest["deploy"]  # the same facts in the manifest, before the QUANTIZE ops count twice there too
    assert {o["op"]: o["count"] for o in deploy["ops"]} == {o.op: o.count for o in report.ops}
    assert deploy["min_runtime_version"] == report.min_runtime_version and deploy["arena_bytes"] == report.arena_bytes
    assert cli(["inspect", str(uint8_art.path)]) == 0
    assert "MediaPipe ImageClassifier: loads it" in capsys.readouterr().out


def test_inspect_on_a_file_without_metadata_says_what_is_missing_and_how(int8_io_art, tmp_path, capsys):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(metadata.strip_files(int8_io_art.model_bytes))
    assert cli(["inspect", str(bare)]) == 0  # it has TFLITE_METADATA but int8 input
    assert "will refuse it: input tensor is int8" in capsys.readouterr().out
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(export.convert(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])))
    missing = metadata.missing_for_image_classifier(plain.read_bytes())
    assert len(missing) == 1 and "no standard TFLite Metadata" in missing[0] and "edgeopt android" in missing[0]


# ---- bad input ---------------------------------------------------------------------------------------------


def test_labels_that_do_not_match_the_outputs_are_a_one_line_error(model, digits_splits):
    with pytest.raises(ValueError, match=r"labels has 3 class names but model '.*' has 10 outputs") as err:
        export.to_tflite(model, "float32", digits_splits, labels=["a", "b", "c"])
    assert "\n" not in str(err.value)


def test_a_model_whose_input_is_not_an_image_is_a_one_line_error():
    dense = keras.Sequential([keras.Input((20,)), keras.layers.Dense(3, activation="softmax")], name="tabular")
    x = np.random.default_rng(0).normal(size=(16, 20)).astype(np.float32)
    with pytest.raises(ValueError, match=r"model 'tabular' input \(None, 20\) is not an image tensor.*android_metadata=False") as err:
        export.to_tflite(dense, "float32", x)
    assert "\n" not in str(err.value)
    art = export.to_tflite(dense, "int8", x, io="int8", android_metadata=False, num_verify=0)
    assert metadata.read_model_metadata(art.model_bytes) is None


def test_io_needs_an_int8_model():
    with pytest.raises(ValueError, match="io='uint8' needs mode='int8'"):
        export.resolve_io("float16", "uint8")
    from edgeopt.pipeline.recipe import RecipeError, recipe_from_dict

    doc = {"data": {"dataset": "digits"}, "model": {"name": "mobilenet_v2_tiny"}, "stages": [{"type": "export", "mode": "float16", "io": "uint8"}]}
    with pytest.raises(RecipeError, match=r"stages\[0\].*io 'uint8' needs mode"):
        recipe_from_dict(doc)


# ---- every shipped artifact (slow: the full Fashion-MNIST test set through MediaPipe) ----------------------


SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("tflite_models/**/*.tflite"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_artifact_loads_in_mediapipe_and_matches_bench(name):
    path = ROOT / name
    manifest = export.read_manifest(path)
    assert metadata.missing_for_image_classifier(path.read_bytes()) == []
    app = bench.evaluate_mediapipe(path, "fashion_mnist")
    test, _ = bench.load_test_data(path, "fashion_mnist")
    litert = bench.evaluate_tflite(path, test)
    assert app.samples == litert.samples == 10_000
    assert abs(app.top1 - litert.top1) <= 0.005, (app.top1, litert.top1)
    with bench.mediapipe_classifier(path, max_results=1) as classifier:
        index, category, _ = bench.classify(classifier, np.zeros((1, 28, 28, 1), np.uint8))[0][0]
    assert category == manifest["labels"][index]
    assert json.loads(path.with_suffix(".json").read_text())["file"]["sha256"] == manifest["file"]["sha256"]
