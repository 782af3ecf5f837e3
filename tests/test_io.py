"""edgeopt.io: atomic writes that refuse to clobber, synced model saves, safe loads, gzip size."""
import gzip
import os

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.io import gzip_size, load_model_safe, save_model_atomic, save_weights_atomic, write_atomic


def test_write_atomic_refuses_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_atomic(target, "one")
    assert target.read_text() == "one"
    with pytest.raises(FileExistsError, match="a.txt already exists"):
        write_atomic(target, b"two")
    assert target.read_text() == "one"
    write_atomic(target, b"three", overwrite=True)
    assert target.read_bytes() == b"three"
    assert sorted(os.listdir(target.parent)) == ["a.txt"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_gzip_size_is_what_gzip_level_9_writes():
    data = bytes(range(256)) * 40
    assert gzip_size(data) == len(gzip.compress(data, 9, mtime=0)) < len(data)


def test_model_save_and_safe_load_round_trip(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3)(inp))
    save_model_atomic(model, tmp_path / "m.keras")
    save_weights_atomic(model, tmp_path / "m.weights.h5")
    back = load_model_safe(tmp_path / "m.keras")
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(back(x).numpy(), model(x).numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.weights.h5"]


def test_safe_load_refuses_a_lambda_layer(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp))
    save_model_atomic(model, tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
        load_model_safe(tmp_path / "lambda.keras")
