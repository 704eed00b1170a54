"""Run folders under faults: device-count changes, damaged or non-finite checkpoints, override round trips."""

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from data_helpers import SMALL_SPEC, SMALL_TRAIN, copy_run, snapshot, train_command, trained_run
from PIL import Image

import evaluate as evaluate_cli
import train as train_cli
from cea_jax import restore, train_lib
from cea_jax import workdir as wd
from cea_jax.data import catalog, embedded, pipeline
from cea_jax.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
FOUR_DEVICE_TRAIN = dataclasses.replace(SMALL_TRAIN, batch_size=4)
FOUR_DEVICE_SAVER = Path(__file__).with_name("four_device_save_worker.py")


@pytest.fixture(scope="module")
def four_device_run(tmp_path_factory):
    """A run folder whose step-1 checkpoint was written by a 4-device process."""
    workdir = tmp_path_factory.mktemp("four") / "run"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(FOUR_DEVICE_SAVER), str(workdir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


def test_checkpoint_written_on_four_devices_loads_for_inference_on_one(four_device_run):
    config, params, step = wd.load_params(str(four_device_run))
    assert step == 1 and config == SMALL_SPEC.config()
    assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(params))
    total = sum(float(np.asarray(x, np.float64).sum()) for x in jax.tree.leaves(params))
    assert total == pytest.approx(float(np.load(four_device_run / "params_sum.npy")), rel=1e-12)


def test_checkpoint_written_on_four_devices_resumes_training_on_one(four_device_run):
    mesh = train_lib.make_mesh(jax.devices()[:1])
    abstract, _ = train_lib.state_initializer(SMALL_SPEC.config(), FOUR_DEVICE_TRAIN, mesh)
    manager = wd.checkpoint_manager(four_device_run)
    try:
        state = wd.restore_checkpoint(manager, abstract, _training_data(FOUR_DEVICE_TRAIN))
    finally:
        manager.close()
    assert int(state["step"]) == 0  # the 4-device process saved its initial state at step 1
    assert all(x.sharding.device_set == {jax.devices()[0]} for x in jax.tree.leaves(state))


def _training_data(config):
    """The training iterator train_lib.train builds for ``config`` (what a checkpoint's ``data`` item holds)."""
    source = catalog.train_source(catalog.parse_data(config.data, None), config.protocol, seed=config.seed,
                                  crop=config.crop)
    return iter(pipeline.train_dataset(source, seed=config.seed, crop=config.crop, batch_size=config.batch_size))


def _add_step(workdir: Path, step: int, edit=lambda state: state) -> None:
    """Save the run's final state again as ``step`` (after ``edit``), as training would."""
    abstract, _ = train_lib.state_initializer(SMALL_SPEC.config(), SMALL_TRAIN, train_lib.make_mesh())
    data = _training_data(SMALL_TRAIN)
    manager = wd.checkpoint_manager(workdir)
    try:
        state = wd.restore_checkpoint(manager, abstract, data)
        manager.save(step, args=wd.checkpoint_args(edit(state), data), force=True)
        manager.wait_until_finished()
    finally:
        manager.close()


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def flip_bytes(step_dir: Path) -> None:
    target = _largest_file(step_dir / "state")
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    target.write_bytes(bytes(data))


def truncate(step_dir: Path) -> None:
    target = _largest_file(step_dir / "state")
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 3])


@pytest.mark.parametrize("damage", [flip_bytes, truncate])
def test_damaged_newest_step_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    workdir = copy_run(tmp_path)
    _add_step(workdir, SMALL_TRAIN.steps + 1)
    damage(workdir / wd.CHECKPOINTS / str(SMALL_TRAIN.steps + 1))
    with caplog.at_level(logging.WARNING, logger="cea_jax.workdir"):
        _, params, step = wd.load_params(str(workdir))
    assert step == SMALL_TRAIN.steps
    assert f"checkpoint step {SMALL_TRAIN.steps + 1} " in caplog.text and "falling back" in caplog.text
    _, expected, _ = wd.load_params(str(trained_run()[0]))
    for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_damaged_step_named_explicitly_is_a_one_line_error(tmp_path, capsys):
    workdir = copy_run(tmp_path)
    step_dir = workdir / wd.CHECKPOINTS / str(SMALL_TRAIN.steps)
    flip_bytes(step_dir)
    code = evaluate_cli.main(["--task", "aio3", "--checkpoint", str(step_dir), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("evaluate.py: error: ") and f"checkpoint step {SMALL_TRAIN.steps} " in err


def test_non_finite_weights_are_an_error_naming_the_step(tmp_path, capsys):
    workdir = copy_run(tmp_path)

    def poison(state):
        def nan_first(x):
            x = np.array(x)
            x.reshape(-1)[0] = np.nan
            return x
        return {**state, "params": jax.tree.map(nan_first, state["params"])}

    _add_step(workdir, 42, poison)
    with pytest.raises(wd.WorkdirError, match="step 42 holds non-finite weights"):
        wd.load_params(str(workdir))
    code = evaluate_cli.main(["--task", "aio3", "--workdir", str(workdir), "--out", str(tmp_path / "e")])
    assert code == 2 and "non-finite" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()  # no table of NaNs
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    code = restore.main([str(image), str(tmp_path / "out.png"), "--workdir", str(workdir)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "out.png").exists()
    assert f"{workdir.absolute() / wd.CHECKPOINTS}: checkpoint step 42 holds non-finite weights (params." in err


@pytest.mark.slow
def test_training_resumes_past_a_damaged_step_without_duplicate_metrics(tmp_path, caplog):
    config = dataclasses.replace(SMALL_TRAIN, checkpoint_every=4)
    workdir = tmp_path / "run"
    train_lib.train(workdir, SMALL_SPEC, config, progress=False)
    flip_bytes(workdir / wd.CHECKPOINTS / str(config.steps))
    with caplog.at_level(logging.WARNING, logger="cea_jax.workdir"):
        row = train_lib.train(workdir, SMALL_SPEC, config, progress=False)
    assert "falling back" in caplog.text and row["step"] == config.steps and "loss" in row  # steps 5-8 re-run
    assert [p.name.split(".")[0] for p in (workdir / wd.CHECKPOINTS).glob("*.corrupt-*")] == [str(config.steps)]
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == list(range(1, config.steps + 1))
    _, expected, _ = wd.load_params(str(trained_run()[0]))
    _, actual, _ = wd.load_params(str(workdir))
    for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(actual), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_list_valued_overrides_round_trip_so_the_same_command_resumes(tmp_path, capsys):
    workdir = copy_run(tmp_path)
    args = ["--workdir", str(workdir), "--steps", str(SMALL_TRAIN.steps), "--batch-size", "2", "--crop", "32",
            "--workers", "0", "--val-images", "1", "--val-crop", "32", "--no-progress",
            "--set", "num_blocks=[1,1,1,1]", "--set", "dim=8", "--set", "num_refinement_blocks=0", "--set", "rank=2"]
    assert train_cli.main(args) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["step"] == SMALL_TRAIN.steps
    spec = wd.ModelSpec("tiny", "cea", (("num_blocks", [1, 1, 1, 1]), ("affinity", "softmax"), ("rank", 2)))
    wd.save_run_config(tmp_path / "other", spec, {})
    assert wd.load_run_config(tmp_path / "other")[0] == spec


def test_finite_weights_that_restore_to_nan_exit_2_not_0(tmp_path, capsys):
    workdir = copy_run(tmp_path)
    _add_step(workdir, 43, lambda state: {**state, "params": jax.tree.map(lambda x: np.asarray(x) * 1e30,
                                                                           state["params"])})
    code = evaluate_cli.main(["--task", "aio3", "--workdir", str(workdir), "--out", str(tmp_path / "e"),
                              "--max-images", "1", "--grid", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "restores to non-finite values" in err and "step 43" in err


def saved_settings(config: TrainConfig) -> dict:
    """The training settings a run on the embedded data saves: its config and the embedded split."""
    return {**dataclasses.asdict(config), "embedded_split": embedded.split_identity()}


def test_resuming_with_other_settings_is_refused_in_one_line_and_writes_nothing(tmp_path, capsys):
    workdir = copy_run(tmp_path)
    before = snapshot(workdir)
    code = train_cli.main([*train_command(workdir), "--lr", "0.001", "--seed", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "was trained with other settings (lr 0.0002 -> 0.001, seed 0 -> 3)" in err
    assert err.rstrip().endswith("or add --allow-changed-settings to go on with these")
    assert snapshot(workdir) == before


def test_allowed_setting_changes_are_kept_per_step_range(tmp_path, capsys):
    workdir = copy_run(tmp_path)
    assert train_cli.main([*train_command(workdir), "--lr", "0.001", "--allow-changed-settings"]) == 0, \
        capsys.readouterr().err
    changed = {**saved_settings(SMALL_TRAIN), "lr": 0.001}
    assert wd.settings_history(workdir) == [{"from_step": 0, "train": saved_settings(SMALL_TRAIN)},
                                            {"from_step": SMALL_TRAIN.steps, "train": changed}]
    assert wd.load_run_config(workdir)[1] == changed
    # The new settings are now the run's: the same command resumes without the flag.
    assert train_cli.main([*train_command(workdir), "--lr", "0.001"]) == 0
    assert len(wd.settings_history(workdir)) == 2


def test_a_config_json_without_history_still_resumes(tmp_path, capsys):
    """Run folders written before histories existed hold one ``train`` entry: a one-entry history."""
    workdir = copy_run(tmp_path)
    payload = json.loads((workdir / wd.CONFIG_FILE).read_text())
    del payload["history"]
    (workdir / wd.CONFIG_FILE).write_text(json.dumps(payload))
    old = saved_settings(SMALL_TRAIN)
    assert wd.settings_history(workdir) == [{"from_step": 0, "train": old}]
    assert train_cli.main(train_command(workdir)) == 0, capsys.readouterr().err
    assert wd.settings_history(workdir) == [{"from_step": 0, "train": old}]
    # Logging/checkpoint cadence does not change what is learnt: free to change, still recorded.
    assert train_cli.main([*train_command(workdir), "--log-every", "2"]) == 0, capsys.readouterr().err
    assert wd.settings_history(workdir)[1] == {"from_step": SMALL_TRAIN.steps, "train": {**old, "log_every": 2}}


def test_a_setting_added_to_the_code_later_counts_as_its_default():
    saved = {"lr": 0.1}
    assert wd.setting_changes(saved, {"lr": 0.1, "new_knob": None}, {"new_knob": None}) == {}
    assert wd.setting_changes(saved, {"lr": 0.1, "new_knob": 2}, {"new_knob": None}) == {"new_knob": (None, 2)}


def _foreign_checkpoint(workdir: Path, state: dict) -> None:
    """A checkpoint another orbax program wrote as DIR/checkpoints/1 (with a 'state' item, as ours)."""
    manager = ocp.CheckpointManager(workdir.absolute() / wd.CHECKPOINTS, item_names=("state",))
    try:
        manager.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
        manager.wait_until_finished()
    finally:
        manager.close()


def test_train_refuses_a_folder_holding_another_programs_checkpoints_before_writing(tmp_path, capsys):
    workdir = tmp_path / "theirs"
    _foreign_checkpoint(workdir, {"w": np.ones(3, np.float32)})
    before = snapshot(workdir)
    code = train_cli.main(train_command(workdir))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"holds checkpoints but {workdir / wd.CONFIG_FILE} is missing" in err
    assert snapshot(workdir) == before  # no config.json, no lock file left


@pytest.mark.parametrize(("state", "message"), [
    ({"w": np.ones(3, np.float32)}, "checkpoint step 1 holds no model parameters (not written by train.py)"),
    ({"params": {"w": np.ones(3, np.float32)}}, "checkpoint step 1 holds another model than config.json describes"),
])
def test_inference_on_another_programs_checkpoint_is_one_line(tmp_path, capsys, state, message):
    workdir = tmp_path / "theirs"
    _foreign_checkpoint(workdir, state)
    shutil.copy(trained_run()[0] / wd.CONFIG_FILE, workdir)  # as an older train.py left it before refusing
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    for main, args in ((evaluate_cli.main, ["--task", "aio3", "--workdir", str(workdir)]),
                       (restore.main, [str(image), str(tmp_path / "out.png"), "--workdir", str(workdir)])):
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out.png").exists() and not (workdir / "eval").exists()


def _without_adapters(state):
    def strip(tree):
        if not isinstance(tree, dict):
            return tree
        return {k: strip(v) for k, v in tree.items() if not k.startswith("adapter_")}
    return {**state, "params": strip(state["params"])}


def test_evaluate_falls_back_past_a_newest_step_of_another_variant(tmp_path, capsys, caplog):
    workdir = copy_run(tmp_path)
    _add_step(workdir, SMALL_TRAIN.steps + 1, _without_adapters)  # a plain backbone's parameters
    out = tmp_path / "eval"
    with caplog.at_level(logging.WARNING, logger="cea_jax.workdir"):
        code = evaluate_cli.main(["--task", "aio3", "--workdir", str(workdir), "--out", str(out),
                                  "--max-images", "1", "--grid", "0", "--no-progress"])
    assert code == 0 and "Traceback" not in capsys.readouterr().err
    assert f"checkpoint step {SMALL_TRAIN.steps + 1} holds another model" in caplog.text
    assert "falling back" in caplog.text
    assert json.loads((out / "results.json").read_text())["step"] == SMALL_TRAIN.steps
    step_dir = workdir / wd.CHECKPOINTS / str(SMALL_TRAIN.steps + 1)
    code = evaluate_cli.main(["--task", "aio3", "--checkpoint", str(step_dir), "--out", str(tmp_path / "e2")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "holds another model than config.json describes" in err


def test_a_hand_edited_override_of_the_wrong_type_is_refused_naming_the_file(tmp_path):
    """config.json's overrides get the type check ``--set`` gets: a float rank would fail deep inside JAX."""
    spec = wd.ModelSpec("tiny", "cea", (("rank", 2),))
    wd.save_run_config(tmp_path, spec, {})
    payload = json.loads((tmp_path / wd.CONFIG_FILE).read_text())
    payload["model"]["overrides"]["rank"] = 1e9
    (tmp_path / wd.CONFIG_FILE).write_text(json.dumps(payload))
    with pytest.raises(wd.WorkdirError, match=r"config.json: unreadable run config \(override rank: expected int"):
        wd.load_run_config(tmp_path)
