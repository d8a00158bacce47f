"""What the runner relies on in Optuna's private API (optuna_spark.optuna_internals), pinned against
the installed Optuna on a real SQLite storage: an Optuna upgrade that changes one of these fails
here, by name, before the ledger's or the task's tests fail for reasons harder to read."""

from __future__ import annotations

import datetime
import json
import threading
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy import select
from sqlalchemy.orm import Session

from optuna_spark import optuna_internals as oi


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")


def test_ids_and_storage_of_a_study_and_its_trials(study: optuna.Study) -> None:
    trial = study.ask()
    storage = oi.study_storage(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert storage.get_study_id_from_name("s") == oi.study_id(study)
    assert storage.get_trial(oi.trial_id(trial)).number == trial.number == 0
    assert oi.trial_id(study.trials[0]) == oi.trial_id(trial)   # a FrozenTrial's id is the Trial's


def test_an_rdb_url_gives_a_cached_storage_around_the_rdb_storage(study: optuna.Study) -> None:
    from optuna.storages._cached_storage import _CachedStorage

    assert isinstance(oi.study_storage(study), _CachedStorage)
    assert isinstance(oi.rdb_backend(oi.study_storage(study)), optuna.storages.RDBStorage)
    memory = optuna.storages.InMemoryStorage()
    assert oi.rdb_backend(memory) is memory


def test_the_tables_and_columns_the_ledger_reads_and_writes(study: optuna.Study) -> None:
    """The ledger's SQL: these tables and columns, the state stored as TrialState, times as naive
    UTC, attributes as JSON, a heartbeat row per trial."""
    models = oi.rdb_models()
    columns = {
        models.TrialModel: {"trial_id", "number", "study_id", "state", "datetime_start", "datetime_complete"},
        models.StudyModel: {"study_id", "study_name"},
        models.TrialSystemAttributeModel: {"trial_id", "key", "value_json"},
        models.TrialUserAttributeModel: {"trial_id", "key", "value_json"},
        models.TrialHeartbeatModel: {"trial_id", "heartbeat"},
    }
    for model, names in columns.items():
        assert names <= set(model.__table__.c.keys()), model.__name__
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    trial = study.ask()
    trial.set_user_attr("host", "h")
    study.tell(trial, 1.0)
    rdb = oi.rdb_backend(oi.study_storage(study))
    t, u = models.TrialModel.__table__, models.TrialUserAttributeModel.__table__
    with rdb.engine.connect() as conn:
        row = conn.execute(select(t.c.state, t.c.datetime_start, t.c.number, t.c.study_id)).one()
        value = conn.execute(select(u.c.value_json).where(u.c.key == "host")).scalar()
    assert row.state == TrialState.COMPLETE and row.number == 0 and row.study_id == oi.study_id(study)
    assert row.datetime_start.tzinfo is None and row.datetime_start >= before.replace(microsecond=0)
    assert abs((row.datetime_start - before).total_seconds()) < 60   # naive UTC, whatever the host's zone
    assert json.loads(value) == "h"


def test_studies_number_their_trials_in_creation_order_under_the_studys_row_lock(study: optuna.Study) -> None:
    """The ledger numbers a new trial as the newest trial's number + 1 and reads trials in id
    order: Optuna numbers 0, 1, ... in creation (id) order, even from many threads, and takes the
    study's row lock (`find_or_raise_by_id(for_update=True)`) to do it."""
    import inspect

    from optuna.storages._rdb import storage as rdb_storage_module

    source = inspect.getsource(rdb_storage_module.RDBStorage._create_new_trial)
    assert "find_or_raise_by_id(study_id, session, for_update=True)" in source
    threads = [threading.Thread(target=lambda: [study.ask() for _ in range(10)]) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    trials = sorted(oi.study_storage(study).get_all_trials(oi.study_id(study)), key=oi.trial_id)
    assert [t.number for t in trials] == list(range(40))


def test_a_new_trial_from_a_template_in_the_callers_session(study: optuna.Study) -> None:
    """`new_trial_in` as the ledger's retry uses it: params, attributes and state of the
    template, numbered after the study's trials, written in the caller's session."""
    study.ask()
    rdb = oi.rdb_backend(oi.study_storage(study))
    template = FrozenTrial(number=-1, state=TrialState.WAITING, value=None, values=None, datetime_start=None,
                           datetime_complete=None, params={"x": 0.5},
                           distributions={"x": FloatDistribution(0, 1)}, user_attrs={"u": 1},
                           system_attrs={"retry_history": [0]}, intermediate_values={}, trial_id=-1)
    with Session(rdb.engine) as session:
        row = oi.new_trial_in(rdb, oi.study_id(study), template, session)
        session.flush()
        oi.set_trial_attr_in(rdb, session, oi.rdb_models().TrialSystemAttributeModel, row.trial_id, "k", {"a": 1})
        frozen = oi.frozen_trial_of(rdb, row)
        session.commit()
    stored = oi.study_storage(study).get_all_trials(oi.study_id(study))[-1]
    assert frozen.number == stored.number == 1 and stored.state == TrialState.WAITING
    assert stored.params == {"x": 0.5} and stored.user_attrs == {"u": 1}
    assert stored.system_attrs == {"retry_history": [0], "k": {"a": 1}}
    assert frozen.system_attrs["k"] == {"a": 1} and frozen.params == {"x": 0.5}


def test_a_started_trial_registered_in_the_cache_is_read_again_until_it_ends(study: optuna.Study) -> None:
    """`cache_started_trial`: the cached storage lists a trial created behind its back (by the
    ledger) without re-reading the study, and still sees its later changes."""
    cached = oi.study_storage(study)
    rdb = oi.rdb_backend(cached)
    study.get_trials()                                      # the cache has read the (empty) study
    trial_id = rdb.create_new_trial(oi.study_id(study))    # behind the cache's back, as the ledger does
    assert oi.cache_started_trial(cached, oi.study_id(study), lambda: rdb.get_trial(trial_id))
    assert [oi.trial_id(t) for t in cached.get_all_trials(oi.study_id(study))] == [trial_id]
    rdb.set_trial_state_values(trial_id, TrialState.COMPLETE, [2.0])  # changed behind its back again
    assert cached.get_all_trials(oi.study_id(study))[0].state == TrialState.COMPLETE
    assert not oi.cache_started_trial(optuna.storages.InMemoryStorage(), 0, lambda: None)


def test_study_stop_inside_the_loop_and_the_trials_view(study: optuna.Study) -> None:
    """`study.stop()` is refused outside an optimize loop and flags a stop inside one, as in
    `study.optimize`; the samplers' cached view of the study is dropped when asked."""
    with pytest.raises(RuntimeError):
        study.stop()
    with oi.optimize_loop(study):
        assert not oi.stop_requested(study)
        study.stop()
        assert oi.stop_requested(study)
    with pytest.raises(RuntimeError):
        study.stop()                                              # the loop is over
    oi.clear_stop(study)
    assert not oi.stop_requested(study)
    study._thread_local.cached_all_trials = ["stale"]
    oi.refresh_trials_view(study)
    assert study._get_trials(deepcopy=False, use_cache=True) == []  # read afresh, not the stale list


def test_setting_an_attribute_twice_in_a_session_keeps_the_last_value(study: optuna.Study) -> None:
    """The ledger binds a claim to a trial whose attributes Optuna's retry callback copied from
    another (its claim attribute included): the attribute is replaced, not refused or doubled."""
    trial = study.ask()
    rdb = oi.rdb_backend(oi.study_storage(study))
    model = oi.rdb_models().TrialSystemAttributeModel
    with Session(rdb.engine) as session:
        oi.set_trial_attr_in(rdb, session, model, oi.trial_id(trial), "claim", "first")
        session.commit()
    with Session(rdb.engine) as session:
        oi.set_trial_attr_in(rdb, session, model, oi.trial_id(trial), "claim", "second")
        session.commit()
    assert rdb.get_trial(oi.trial_id(trial)).system_attrs == {"claim": "second"}


def test_the_checks_of_tell_on_an_objectives_values(study: optuna.Study) -> None:
    assert oi.values_problem(study, [1.0]) is None
    assert oi.values_problem(study, [float("nan")]) is not None
    assert oi.values_problem(study, [1.0, 2.0]) is not None        # one direction, two values
    assert oi.values_problem(study, ["x"]) is not None


def test_the_pareto_front_of_a_list_of_trials() -> None:
    trials = [create_trial(values=v, params={}, distributions={}) for v in ([1, 4], [2, 3], [3, 3], [4, 1])]
    for number, trial in enumerate(trials):
        trial.number = number
    front = oi.pareto_front_trials(trials, [StudyDirection.MINIMIZE, StudyDirection.MINIMIZE])
    assert sorted(t.number for t in front) == [0, 1, 3]


def test_no_other_module_reaches_optuna_private_names() -> None:
    """The package's only door to Optuna's private API is optuna_internals: no other module imports
    a private Optuna module or name, or reads a private attribute of an object that is not its
    own (`self._x`, `cls._x`), which is how a study's or trial's internals would be reached."""
    import ast

    package = Path(oi.__file__).parent
    own_objects = {"self", "cls"}
    # PySpark's handles of its JVM objects (not Optuna's), where PySpark has no public API; each
    # use is commented where it is made.
    pyspark_handles = {"_jvm", "_jdf", "_jbroadcast", "_value"}
    # Python's own: os._exit and the runner of the exit handlers (optuna_spark.spark_app.exit_now).
    pyspark_handles |= {"_exit", "_run_exitfuncs"}
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "optuna_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optuna") \
                    and not node.module.startswith("optuna_spark") \
                    and (any(p.startswith("_") for p in node.module.split("."))
                         or any(a.name.startswith("_") for a in node.names)):
                found.append(f"{path.name}:{node.lineno} from {node.module} import ...")
            elif isinstance(node, ast.Import):
                found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                          if a.name.startswith("optuna.") and any(p.startswith("_") for p in a.name.split("."))]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and node.attr not in pyspark_handles \
                    and not (isinstance(node.value, ast.Name) and node.value.id in own_objects):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not found, found
