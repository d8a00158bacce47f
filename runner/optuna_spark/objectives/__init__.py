"""Objectives: the seed's two studies, a benchmark load, and the user's own `module:function`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna_spark.errors import ConfigError


@dataclass(frozen=True)
class ObjectiveSpec:
    """A built-in objective name, or `module:function` / `path/to/file.py:function`."""

    name: str
    module: str
    function: str
    ship_file: str | None = None  # a user's file shipped with --py-files
    # Its second parameter, the data set (--data): "no" (objective(trial)), "optional"
    # (objective(trial, data=None)) or "required" (objective(trial, data)).
    takes_data: str = "no"

    @property
    def builtin(self) -> bool:
        return self.ship_file is None and self.module.startswith("optuna_spark.objectives.")

BUILTINS: dict[str, str] = {
    "quadratic": "optuna_spark.objectives.quadratic:objective",
    "xgboost-wine": "optuna_spark.objectives.xgboost_wine:objective",
    "sleep": "optuna_spark.objectives.sleep:objective",
}


def resolve(spec: str, cwd: Path | None = None, what: str = "objective") -> ObjectiveSpec:
    """Turn `--objective` (or a `--callback`) into an ObjectiveSpec; user code is imported once
    here to check it."""
    if what == "objective" and spec in BUILTINS:
        module, function = BUILTINS[spec].split(":")
        fn = getattr(importlib.import_module(module), function)
        return ObjectiveSpec(name=spec, module=module, function=function, takes_data=data_parameter(fn))
    target, sep, function = spec.rpartition(":")
    if not sep or not target or not function.isidentifier():
        if what != "objective":
            raise ConfigError(f"{what} {spec!r} must be module:function or path/to/file.py:function")
        raise ConfigError(
            f"unknown objective {spec!r}: use one of {', '.join(sorted(BUILTINS))} "
            "or module:function / path/to/file.py:function"
        )
    base = cwd or Path.cwd()
    if target.endswith(".py"):
        path = (base / target).resolve()
        if not path.is_file():
            raise ConfigError(f"{what} file {target} does not exist")
        module = path.stem
        if not module.isidentifier():
            raise ConfigError(f"{what} file name {path.name!r} is not a valid module name")
        mod = _import_file(module, path, what)
        ship: str | None = str(path)
    else:
        if str(base) not in sys.path:
            sys.path.insert(0, str(base))
        try:
            mod = importlib.import_module(target)
        except Exception as exc:  # user code: any error means "cannot use it"
            raise ConfigError(f"cannot import {what} module {target!r}: {type(exc).__name__}: {exc}") from None
        module = target
        origin = getattr(mod, "__file__", None)
        # A module of the user's own tree is shipped; an installed one must exist on the nodes.
        ship = origin if origin and Path(origin).name != "__init__.py" and _is_under(Path(origin), base) else None
    fn = getattr(mod, function, None)
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r}: {module} has no callable {function!r}")
    takes_data = data_parameter(fn) if what == "objective" else "no"
    return ObjectiveSpec(name=spec, module=module, function=function, ship_file=ship, takes_data=takes_data)


def data_parameter(fn: Callable[..., Any]) -> str:
    """Whether an objective takes the data set (`--data`) as its second argument: "no" for
    `objective(trial)`, "optional" for `objective(trial, data=None)` (or `*args`), "required"
    for `objective(trial, data)`. A third parameter without a default cannot be called: refused."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: called with the trial only
        return "no"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_after = [p.name for p in positional[2:] if p.default is p.empty]
    required_after += [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if required_after:
        raise ConfigError(f"objective {getattr(fn, '__name__', fn)!r} takes more than (trial) or (trial, data): "
                          f"{', '.join(required_after)} would have no value")
    if len(positional) >= 2:
        return "optional" if positional[1].default is not positional[1].empty else "required"
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return "optional"
    return "no"


def _is_under(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
        return True
    except ValueError:
        return False


def _import_file(module: str, path: Path, what: str = "objective") -> Any:
    loader_spec = importlib.util.spec_from_file_location(module, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"cannot load {what} file {path}")
    mod = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(mod)
    except Exception as exc:
        raise ConfigError(f"cannot import {what} file {path.name}: {type(exc).__name__}: {exc}") from None
    return mod


def load(spec: ObjectiveSpec) -> Callable[..., Any]:
    """Executor side: import the objective (a shipped file is on sys.path via --py-files)."""
    mod = importlib.import_module(spec.module)
    fn = getattr(mod, spec.function)
    if not callable(fn):
        raise TypeError(f"{spec.module}.{spec.function} is not callable")
    return fn  # type: ignore[no-any-return]
