"""The runner: stages run in order into a run directory; a run killed with SIGKILL resumes to the same result."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.pipeline import make_strategy, run_recipe
from edgeopt.pipeline.recipe import RecipeError

from conftest import make_recipe, write_recipe

# two train stages; the second one long enough to be killed in
KILL_STAGES = [{"type": "train"}, {"type": "train", "epochs": 3, "learning_rate": 0.0005}]


def _recipe(name: str, stages: list[dict], train: dict | None = None, **sections) -> dict:
    """A digits / mobilenet_v1_tiny recipe of ``stages`` (12 steps an epoch unless they say otherwise)."""
    return make_recipe(name=name, train={"steps_per_epoch": 12, **(train or {})}, stages=stages, **sections)


def _run_cli(recipe: Path, out: Path, *extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "edgeopt.cli", "run", str(recipe), "--out", str(out), "--artifacts", str(out / "art"), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _weights(path: Path):
    return keras.models.load_model(path, compile=False).get_weights()


def test_run_killed_with_sigkill_resumes_to_identical_weights(tmp_path):
    recipe = write_recipe(tmp_path / "killme.toml", _recipe("killme", KILL_STAGES))
    full = run_recipe(recipe, out_dir=tmp_path / "a", artifacts_dir=None, progress=lambda s: None)
    assert [s["type"] for s in full["stages"]] == ["train"] * 2

    proc = _run_cli(recipe, tmp_path / "b")
    run_dir = tmp_path / "b" / "killme"
    deadline = time.time() + 600
    while not (run_dir / "00-train" / "result.json").exists():  # kill during the last stage
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stage0 = json.loads((run_dir / "00-train" / "result.json").read_text())
    assert not (run_dir / "01-train" / "result.json").exists()
    assert not (run_dir / "report.json").exists()

    resumed = _run_cli(recipe, tmp_path / "b", "--resume")
    assert resumed.wait(timeout=600) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["stages"][0] == stage0  # the completed stage was reused, not re-run
    for a, b in zip(_weights(tmp_path / "a" / "killme" / "01-train" / "model.keras"), _weights(run_dir / "01-train" / "model.keras")):
        np.testing.assert_array_equal(a, b)
    assert report["stages"][1]["metrics"]["test_top1"] == full["stages"][1]["metrics"]["test_top1"]


def test_existing_run_directory_is_not_overwritten_without_asking(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", _recipe("r", [{"type": "train", "steps_per_epoch": 2}]))
    run_recipe(recipe, out_dir=tmp_path, artifacts_dir=None, progress=lambda s: None)
    with pytest.raises(FileExistsError, match="--resume .* --force"):
        run_recipe(recipe, out_dir=tmp_path, artifacts_dir=None, progress=lambda s: None)
    report = run_recipe(recipe, out_dir=tmp_path, resume=True, artifacts_dir=None, progress=lambda s: None)
    assert report["stages"][0]["type"] == "train"


def test_changed_stage_settings_rerun_that_stage_and_later_ones(tmp_path):
    short = {"type": "train", "steps_per_epoch": 2}
    recipe = write_recipe(tmp_path / "r.toml", _recipe("r", [short, short]))
    first = run_recipe(recipe, out_dir=tmp_path, artifacts_dir=None, progress=lambda s: None)
    write_recipe(recipe, _recipe("r", [short, {**short, "steps_per_epoch": 3}]))
    lines = []
    second = run_recipe(recipe, out_dir=tmp_path, resume=True, artifacts_dir=None, progress=lines.append)
    assert any("stage 1/2 train: done earlier, skipped" in s for s in lines)
    assert not any("stage 2/2 train: done earlier" in s for s in lines)
    assert second["stages"][0] == first["stages"][0]
    assert second["stages"][1]["fingerprint"] != first["stages"][1]["fingerprint"]


def test_a_run_without_the_test_split_measures_the_rest_and_resumes_like_any_other(tmp_path):
    from edgeopt.pipeline.stage import last_model_metrics, stage_results

    recipe = write_recipe(tmp_path / "r.toml", _recipe("r", [{"type": "train", "steps_per_epoch": 2}]))
    blind = run_recipe(recipe, out_dir=tmp_path / "a", artifacts_dir=None, progress=lambda s: None, evaluate_test=False)
    metrics = blind["stages"][0]["metrics"]
    assert "test_top1" not in metrics and {"val_top1", "params", "macs", "sparsity"} <= set(metrics)
    assert last_model_metrics(stage_results(blind)) == metrics
    lines = []  # the flag decides what is measured, not what is made: the finished stage is resumed
    again = run_recipe(recipe, out_dir=tmp_path / "a", resume=True, artifacts_dir=None, progress=lines.append)
    assert any("stage 1/1 train: done earlier, skipped" in s for s in lines) and again["stages"] == blind["stages"]
    normal = run_recipe(recipe, out_dir=tmp_path / "b", artifacts_dir=None, progress=lambda s: None)
    tested = normal["stages"][0]
    assert set(tested["metrics"]) == set(metrics) | {"test_top1"} and 0 <= tested["metrics"]["test_top1"] <= 1
    assert tested["fingerprint"] == blind["stages"][0]["fingerprint"]
    assert last_model_metrics(stage_results(normal)) == tested["metrics"]


TWO_LOCAL_CPUS = """
import edgeopt
from edgeopt._keras import tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""

# run_recipe(argv[1], out_dir=argv[2]) in a fresh process; prints the strategy's replica count and test top-1
RUN_SCRIPT = """
import sys
from edgeopt import pipeline
from edgeopt.pipeline import runner
seen = []
real = runner.make_strategy
def spy(name):
    s = real(name)
    seen.append(s.num_replicas_in_sync)
    return s
runner.make_strategy = spy  # the runner looks the name up in its own module
report = pipeline.run_recipe(sys.argv[1], out_dir=sys.argv[2], artifacts_dir=None, progress=lambda s: None)
print("REPLICAS", seen[0], "TOP1", report["stages"][0]["metrics"]["test_top1"])
"""


@pytest.mark.slow  # tf.distribute: 26-38 s each; the default suite stays under 15 minutes
def test_mirrored_strategy_trains_on_two_local_replicas(tmp_path):
    recipe = write_recipe(tmp_path / "m.toml", _recipe("m", [{"type": "train", "epochs": 2, "steps_per_epoch": 41}], train={"distribute": "mirrored"}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", TWO_LOCAL_CPUS + RUN_SCRIPT, str(recipe), str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("REPLICAS"))
    replicas, top1 = int(line.split()[1]), float(line.split()[3])
    assert replicas == 2
    assert top1 > 0.2  # digits, 10 classes: learning happened across both replicas


def _free_loopback_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))  # held together, so the ports differ
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow  # tf.distribute: 26-38 s each; the default suite stays under 15 minutes
def test_multi_worker_trains_two_workers_in_lockstep_to_identical_weights(tmp_path):
    """Two processes on loopback, one TF_CONFIG each, run the same recipe except for the data seed (so each
    worker shuffles its own way): only gradients averaged across workers every step give identical weights."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_loopback_ports(2)]}
    base_env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # gRPC must not route loopback through a proxy
    base_env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    procs = []
    try:
        for index in range(2):
            recipe = write_recipe(tmp_path / f"mw{index}.toml", _recipe("mw", [{"type": "train", "steps_per_epoch": 4}], train={"distribute": "multi_worker"},
                                                                       data={"seed": index, "val_fraction": 0.0, "limit_test": 64}))
            env = {**base_env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            # output to files: a worker blocked on a full pipe would stall the other one too
            with open(tmp_path / f"w{index}.out", "w") as out, open(tmp_path / f"w{index}.err", "w") as err:
                procs.append(subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(recipe), str(tmp_path / f"w{index}")], stdout=out, stderr=err, env=env))
        deadline = time.time() + 300
        while any(p.poll() is None for p in procs) and not any(p.poll() for p in procs) and time.time() < deadline:
            time.sleep(0.2)  # until both end, or one fails
    finally:
        for p in procs:
            if p.poll() is None:  # a worker that died or hung leaves the other waiting for it
                p.kill()
                p.wait()
    failed = [f"worker {i} exited {p.returncode}: {(tmp_path / f'w{i}.err').read_text()[-1500:]}" for i, p in enumerate(procs) if p.returncode]
    assert not failed, "\n".join(failed)
    results = []
    for index in range(2):
        line = next(s for s in (tmp_path / f"w{index}.out").read_text().splitlines() if s.startswith("REPLICAS"))
        results.append((int(line.split()[1]), float(line.split()[3])))
    assert results[0] == results[1] and results[0][0] == 2  # one replica per worker, in sync; same test top-1 (its split ignores the seed)
    weights = [_weights(tmp_path / f"w{index}" / "mw" / "00-train" / "model.keras") for index in range(2)]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_multi_worker_without_tf_config_is_a_recipe_error_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(RecipeError, match='^train.distribute = "multi_worker" needs the TF_CONFIG environment variable') as err:
        make_strategy("multi_worker")
    assert "\n" not in str(err.value)
    recipe = write_recipe(tmp_path / "mw.toml", _recipe("mw", KILL_STAGES, train={"distribute": "multi_worker"}))
    with pytest.raises(RecipeError, match="needs the TF_CONFIG"):
        run_recipe(recipe, out_dir=tmp_path / "runs", artifacts_dir=None, progress=lambda s: None)
    assert not (tmp_path / "runs").exists()  # no run directory, no data loaded


@pytest.mark.slow  # 31 s; resume itself is tested by the SIGKILL test
def test_a_saved_pcqat_stage_model_loads_back_for_resume(tmp_path, monkeypatch):
    # TF-MOT's wrappers do not come back from a .keras file, and the cluster-preserving ones size their
    # variables from the kernel they wrap: the qat stage saves weights + its input model + its config instead.
    import tensorflow as tf

    from edgeopt.compress.cluster import ClusterConfig, cluster, strip_clustering
    from edgeopt.compress.collaborative import prune_to_sparsity
    from edgeopt.compress.quantize import QATConfig
    from edgeopt.models import create
    from edgeopt.pipeline import load_stage_model
    from edgeopt.pipeline.stage import STAGES, StageConfig
    from edgeopt.pipeline.stages.compress import qat_stage
    from types import SimpleNamespace

    from edgeopt.data import load_dataset
    from edgeopt.train import TrainConfig

    # what is saved and loaded is the point here, not accuracy: a few images, no validation split
    splits = load_dataset("digits", image_size=16, channels=3, batch_size=32, val_fraction=0.0, limit_train=64, limit_test=32)
    x, y = splits.arrays("train")
    model = create("mobilenet_v1_tiny", input_shape=x.shape[1:], classes=10)
    clustered = strip_clustering(cluster(prune_to_sparsity(model, 0.5, splits.train, steps=2), ClusterConfig(8, preserve_sparsity=True)))
    ctx = SimpleNamespace(stage_dir=tmp_path, strategy=tf.distribute.get_strategy(), splits=splits)
    config = StageConfig(QATConfig(preserve="sparsity_and_clusters", calibration_samples=32), TrainConfig(epochs=1, steps_per_epoch=2, verbose=0))
    # the stage's two training steps run eagerly: tracing a cluster-preserving QAT model's train function takes
    # ~85 s on 2 cores (eager: 5 s), and saving and loading are the point here, not graph mode
    from edgeopt.pipeline.stages import compress
    from edgeopt.train import compile_for_training

    def eager_fit(model, splits, train, callbacks=(), compile=True):
        compile_for_training(model, train, train.steps_per_epoch * train.epochs)
        model.run_eagerly = True
        return fit(model, splits, train, callbacks, compile=False)

    fit = compress.fit
    monkeypatch.setattr(compress, "fit", eager_fit)
    outcome = qat_stage(ctx, clustered, config)
    assert outcome.model.optimizer.iterations.numpy() == 2  # it trained
    stage = STAGES.get("qat")
    stage.save(outcome.model, tmp_path / stage.model_file)
    assert not list(tmp_path.glob(".tmp-*"))
    loaded = load_stage_model(tmp_path, "qat")
    np.testing.assert_allclose(loaded(x[:8], training=False).numpy(), outcome.model(x[:8], training=False).numpy(), atol=1e-6)
