from __future__ import annotations

from pathlib import Path

import pytest

from optuna_spark.config import (ConfigError, Job, ObjectiveSpec, StudySettings, load_config_file,
                           parse_conf_pairs, static_shares)


def study(**kw) -> StudySettings:
    base = {"name": "s", "storage": "sqlite:///x.db", "n_trials": 10}
    base.update(kw)
    return StudySettings(**base)


@pytest.mark.parametrize("kw, message", [
    ({"n_trials": None}, "give a budget"),
    ({"n_trials": 0}, "--n-trials must be a positive"),
    ({"timeout": 0, "n_trials": None}, "--timeout must be a positive"),
    ({"n_jobs": 0}, "--n-jobs must be a positive"),
    ({"directions": ("up",)}, "direction"),
    ({"directions": ()}, "direction"),
    ({"directions": ("minimize", "maximize"), "sampler": "cmaes"}, "cmaes optimizes one objective"),
    ({"directions": ("minimize", "maximize"), "pruner": "median"}, "pruning needs a single objective"),
    ({"sampler": "anneal"}, "--sampler must be one of"),
    ({"split": "static", "n_trials": 1, "n_jobs": 2}, "at least one trial per task"),
    ({"split": "static", "n_trials": None, "timeout": 5}, "needs --n-trials"),
    ({"pruner": "magic"}, "--pruner"),
    ({"heartbeat_interval": 10, "grace_period": 5}, "grace period"),
    ({"name": ""}, "study name"),
])
def test_bad_study_settings(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        study(**kw).validate()


def test_good_study_settings() -> None:
    study().validate()
    study(n_trials=None, timeout=3.5).validate()
    study(split="static", n_jobs=2).validate()


def test_static_shares_are_the_seeds_split() -> None:
    assert static_shares(200, 2) == [100, 100]
    assert static_shares(10, 4) == [3, 3, 2, 2]
    assert sum(static_shares(161, 7)) == 161


def test_conf_pairs() -> None:
    assert parse_conf_pairs(["spark.a=1", "spark.b=x=y"]) == (("spark.a", "1"), ("spark.b", "x=y"))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_conf_pairs(["spark.a"])


def test_job_round_trips_through_json() -> None:
    job = Job(study=study(sampler_seed=3), objective=ObjectiveSpec("quadratic", "optuna_spark.objectives.quadratic", "objective"),
              gpu=True, password_file="/etc/pw")
    assert Job.from_json(job.to_json()) == job


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "runner.toml"
    path.write_text('storage = "mysql://u@h/optuna"\nmaster = "spark://h:7077"\n[conf]\n"spark.x" = "1"\n')
    assert load_config_file(path)["conf"] == {"spark.x": "1"}
    path.write_text('storage = "x"\nmastr = "typo"\n')
    with pytest.raises(ConfigError, match="unknown key.*mastr"):
        load_config_file(path)
    path.write_text("storage = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "none.toml")
