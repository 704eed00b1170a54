"""Each experiment's config states what its runner does with the config's flags."""

import importlib
import json
from pathlib import Path

import pytest

from experiments.prophetkv_ruler_fidelity import run as ruler_run
from experiments.prophetkv_ruler_fidelity.configs import RUNS
from prophetkv_jax import evaluation

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["cea_mixed", "cea_frozen_backbone", "cea_ablation"])
def test_the_cea_configs_settings_are_what_the_runner_parses(name):
    config = importlib.import_module(f"experiments.{name}.config")
    run = importlib.import_module(f"experiments.{name}.run")
    args = run.parse_args(list(config.FLAGS))
    assert {key: getattr(args, key) for key in config.SETTINGS} == config.SETTINGS
    assert config.COMMAND == " ".join(["python", "-m", f"experiments.{name}.run", *config.FLAGS])
    assert config.COMMAND in " ".join(config.__doc__.replace("\\\n", " ").split())  # the docstring states it


@pytest.mark.parametrize("name", RUNS)
def test_a_ruler_config_gives_the_settings_its_committed_run_recorded(name):
    folder = ROOT / "experiments" / "prophetkv_ruler_fidelity" / "runs" / name
    recorded = json.loads((folder / "summary.json").read_text())["settings"]
    parsed = vars(evaluation.parse_args(ruler_run.evaluate_argv(name, [])))
    assert parsed.pop("out") == str(folder)
    assert {k: parsed[k] for k in recorded if k != "out"} == {k: v for k, v in recorded.items() if k != "out"}


def test_the_tail_config_states_its_command_and_names_committed_runs():
    from experiments.prophetkv_tail import config

    assert config.COMMAND in " ".join(config.__doc__.replace("\\\n", " ").split())
    runs = [flag for flag in config.FLAGS if not flag.startswith("--") and "/" in flag]
    assert runs and all((ROOT / run / "records.jsonl").is_file() for run in runs)


def test_the_default_model_config_is_the_train_py_command_its_docstring_states():
    import train
    from experiments.cea_default_model import config

    settings = train.checked_settings(train.parse_args(list(config.FLAGS)))
    assert (settings.steps, settings.batch_size, settings.crop, settings.lr) == (6000, 8, 64, 1e-3)
    assert config.COMMAND == " ".join(["python", "train.py", *config.FLAGS])
    assert config.COMMAND in " ".join(config.__doc__.replace("\\\n", " ").split())


def test_the_default_model_finetune_is_the_command_its_docstring_states():
    import train
    from experiments.cea_default_model import config

    settings = train.checked_settings(train.parse_args(list(config.FINETUNE_FLAGS)))
    assert (settings.steps, settings.batch_size, settings.crop, settings.lr) == (2500, 4, 128, 3e-4)
    assert settings.init_from == config.WORKDIR
    assert config.FINETUNE_COMMAND in " ".join(config.__doc__.replace("\\\n", " ").split())


def test_the_default_model_recolour_stage_is_the_command_its_docstring_states():
    import train
    from experiments.cea_default_model import config

    settings = train.checked_settings(train.parse_args(list(config.RECOLOUR_FLAGS)))
    assert (settings.steps, settings.batch_size, settings.crop, settings.lr, settings.recolour) == (
        2500, 4, 128, 3e-4, True)
    assert settings.init_from == config.FINETUNE_WORKDIR
    assert config.RECOLOUR_COMMAND in " ".join(config.__doc__.replace("\\\n", " ").split())
