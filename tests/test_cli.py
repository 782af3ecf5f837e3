"""The command line: fast help (no TensorFlow until a command runs), TensorFlow's log lines hidden unless --verbose."""
import subprocess
import sys

from edgeopt.logs import is_native_log_line


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_help_and_import_do_not_load_tensorflow():
    assert _python("import edgeopt, edgeopt.cli, sys; print('tensorflow' in sys.modules)") == "False"
    out = subprocess.run([sys.executable, "-m", "edgeopt.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert "optimize" in out and "--verbose" in out
    # and the package still picks tf_keras for a user who imports TensorFlow right after edgeopt
    assert _python("import edgeopt, tensorflow as tf; print(tf.keras.__name__.split('.')[0])") == "tf_keras"


def test_an_int8_export_without_low_bit_layers_does_not_load_tfmot():
    # TF-MOT takes about 2 s to import: a plain export must not pay it (it did, through the low-bit code path)
    out = _python("import sys, numpy as np\n"
                  "from edgeopt import export\n"
                  "from edgeopt._keras import keras\n"
                  "i = keras.Input((8, 8, 3))\n"
                  "m = keras.Model(i, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(i))))\n"
                  "art = export.to_tflite(m, 'int8', np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype('float32'), num_verify=0)\n"
                  "print(len(art.model_bytes) > 0, 'tensorflow_model_optimization' in sys.modules)")
    assert out.splitlines()[-1] == "True False"


def test_lazy_package_names_resolve_to_the_library():
    import edgeopt
    from edgeopt.costs import profile
    from edgeopt.train import fit

    assert edgeopt.profile is profile and edgeopt.fit is fit and callable(edgeopt.load_model) and callable(edgeopt.finetune)


def test_runtimes_listed_by_the_cli_are_the_bench_runtimes():
    from edgeopt import bench
    from edgeopt.cli import RUNTIMES

    assert RUNTIMES == bench.RUNTIMES


def test_statistics_listed_by_the_cli_are_the_latency_tables():
    from edgeopt.cli import STATISTICS
    from edgeopt.search.latency_table import STATISTICS as TABLE_STATISTICS

    assert STATISTICS == TABLE_STATISTICS


def test_native_log_lines_are_recognised_and_nothing_else():
    noise = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
             b"I0000 00:00:1796207006.589994    5116 port.cc:153] oneDNN custom operations are on.\n",
             b"E0000 00:00:1796206771.571635    3840 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n",
             b"W1202 10:11:12.123456   42 tensorflow/core/framework/op_kernel.cc:1840] OP_REQUIRES failed\n",
             b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8\n",
             b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"]
    kept = [b"edgeopt run: error: recipe file x.toml does not exist\n", b"Traceback (most recent call last):\n", b"I0000 is not a log line\n"]
    assert [is_native_log_line(x) for x in noise] == [True] * 6
    assert [is_native_log_line(x) for x in kept] == [False] * 3


def test_command_line_hides_tensorflow_logs_but_not_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nname = "mobilenet_v2"\nknobs = { alpha = -1 }\n[[stages]]\ntype = "train"\n')
    run = subprocess.run([sys.executable, "-m", "edgeopt.cli", "run", str(bad), "--out", str(tmp_path / "runs")], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"edgeopt run: error: {bad}: model.knobs.alpha must be a width multiplier > 0 (e.g. 0.35, 0.5, 1.0), got -1"]
    assert not (tmp_path / "runs").exists()


def test_run_ends_with_its_table_and_its_wall_time(tmp_path, capsys):
    import re

    from conftest import make_recipe, write_recipe
    from edgeopt.cli import main

    recipe = write_recipe(tmp_path / "r.toml", make_recipe(name="r", train={"steps_per_epoch": 2}, stages=[{"type": "train"}]))
    assert main(["run", str(recipe), "--out", str(tmp_path / "runs"), "--artifacts", str(tmp_path / "art")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| 0 | train |") for line in out)
    minutes, seconds = map(int, re.fullmatch(r"wall time of this command: (\d+) min (\d+) s", out[-1]).groups())
    assert seconds < 60 and minutes * 60 + seconds < 600
