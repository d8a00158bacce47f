"""Waiting out a storage outage, wherever it hits a task.

A MySQL restart, a dropped connection or a cut network shows up as an error of whatever storage
call was under way: a claim, the objective's `trial.report()`, a `tell`. `OutageGuard.call`
retries the call once the database answers again. Whether it answers is asked of the database
itself (`SELECT 1` on a fresh connection), never of Optuna's cached storage, which answers some
reads from memory. The wait backs off and ends after `timeout` seconds with `StorageOutage`.

Every call made through a guard must be idempotent: a commit whose acknowledgement was lost is
retried. Optuna's trial writes are (params, intermediate values and attributes are upserts); the
runner's own state changes are made so (optuna_spark.ledger).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# After the database answers again, a failing call is retried this many times before its error
# is taken for what it is (bad data, a bug), not for an outage.
REACHABLE_RETRIES = 3
FIRST_DELAY, MAX_DELAY = 0.25, 5.0
# MySQL errors by which the server refuses a connection: it is up, the error is no outage.
REFUSALS = (1044, 1045, 1049)


class StorageOutage(BaseException):
    """The storage stayed unreachable longer than the outage timeout. A BaseException: an
    objective's `except Exception` must not swallow it and carry on with a dead storage."""


def storage_errors() -> tuple[type[BaseException], ...]:
    """Errors a storage call raises when the database is down or the connection broke."""
    import optuna
    from sqlalchemy.exc import DBAPIError, DisconnectionError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return (optuna.exceptions.StorageInternalError, DBAPIError, DisconnectionError, PoolTimeout)


# MySQL client errors of a connection that broke: gone away, lost during a query, lost during
# the handshake (CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED).
DISCONNECT_CODES = (2006, 2013, 2055)


def is_disconnect(exc: BaseException) -> bool:
    """The error (or the one it wraps: Optuna's StorageInternalError) is a broken connection."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "connection_invalidated", False):
            return True
        orig = getattr(seen, "orig", None)
        args = getattr(orig if orig is not None else seen, "args", ())
        if args and isinstance(args[0], int) and args[0] in DISCONNECT_CODES:
            return True
        seen = seen.__cause__
    return False


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    text = str(getattr(orig, "orig", None) or orig).strip()
    return text.splitlines()[0][:300] if text else type(orig).__name__


class OutageGuard:
    """Calls storage operations and waits out outages. `probe()` returns True when the database
    answers; `timeout` bounds one outage; `clock` and `sleep` are injectable for the unit tests."""

    def __init__(self, probe: Callable[[], bool], timeout: float, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 errors: tuple[type[BaseException], ...] | None = None,
                 on_wait: Callable[[str, BaseException], None] | None = None) -> None:
        self.probe, self.timeout, self.clock, self.sleep = probe, timeout, clock, sleep
        self.errors = errors if errors is not None else storage_errors()
        self.on_wait = on_wait
        self.last_outage_end: float | None = None  # when the database last came back

    def call(self, fn: Callable[[], T], what: str) -> T:
        reachable_failures = 0
        first_failure: float | None = None
        while True:
            try:
                return fn()
            except self.errors as exc:
                now = self.clock()
                first_failure = now if first_failure is None else first_failure
                if self.probe():
                    if is_disconnect(exc):
                        # The connection broke (a cut network, a lost commit acknowledgement)
                        # while the database answers: retry on a new one, as long as an outage
                        # may last.
                        if now - first_failure >= self.timeout:
                            raise StorageOutage(f"storage connections kept breaking for {self.timeout:g} s "
                                                f"({what}): {first_line(exc)}") from None
                        self.sleep(FIRST_DELAY)
                        continue
                    # An error of the call itself (bad data, a deadlock): a few tries.
                    reachable_failures += 1
                    if reachable_failures > REACHABLE_RETRIES:
                        raise
                    self.sleep(FIRST_DELAY * reachable_failures)
                    continue
                if self.on_wait is not None:
                    self.on_wait(what, exc)
                self.wait(what, exc)

    def wait(self, what: str, exc: BaseException | None = None) -> None:
        """Block until the database answers, backing off; StorageOutage after the timeout."""
        started = self.clock()
        delay = FIRST_DELAY
        while not self.probe():
            if self.clock() - started >= self.timeout:
                reason = first_line(exc) if exc is not None else "no answer"
                raise StorageOutage(f"storage unavailable for {self.timeout:g} s ({what}): {reason}")
            self.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
        self.last_outage_end = self.clock()


def quick_connect_args(connect_args: dict[str, Any], seconds: int) -> dict[str, Any]:
    """The storage's connect arguments with every wait cut to `seconds`: connecting, each read and
    write (MySQL), unacknowledged data (PostgreSQL's tcp_user_timeout, in ms), SQLite's lock wait.
    For calls that must answer within seconds or fail (the outage probe, heartbeats). Pure."""
    out = dict(connect_args)
    for key in ("connect_timeout", "read_timeout", "write_timeout"):
        if key in out:
            out[key] = min(int(out[key]), seconds)
    if "tcp_user_timeout" in out:
        out["tcp_user_timeout"] = min(int(out["tcp_user_timeout"]), seconds * 1000)
    if "timeout" in out:  # SQLite's lock wait
        out["timeout"] = seconds
    return out


def database_probe(connect_url: str, engine_kwargs: dict[str, Any]) -> Callable[[], bool]:
    """`SELECT 1` on a new connection each time (no pool: a pooled connection may be dead)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    kwargs = {k: v for k, v in engine_kwargs.items()
              if k not in ("pool_size", "max_overflow", "pool_recycle", "pool_pre_ping")}
    # A probe answers within seconds.
    connect_args = quick_connect_args(kwargs.pop("connect_args", {}), 5)
    engine = create_engine(connect_url, poolclass=NullPool, connect_args=connect_args, **kwargs)

    def probe() -> bool:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means "not now"...
            # ... except a refusal: the server answered (a wrong password is no outage).
            code = getattr(getattr(exc, "orig", None), "args", (None,))[:1]
            return bool(code) and code[0] in REFUSALS

    return probe


_DELEGATED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
    "get_trial_params", "get_trial_user_attrs", "get_trial_system_attrs", "get_best_trial",
    "get_n_trials", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial", "get_all_trials", "record_heartbeat",
)


def guarded_storage(inner: Any, guard: OutageGuard) -> Any:
    """An Optuna storage whose every call goes through `guard`: an objective that suggests or
    reports during an outage waits, then carries on with the same trial."""
    from optuna.storages import BaseStorage

    def make(name: str) -> Callable[..., Any]:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            fn = getattr(self._inner, name)
            return self._guard.call(lambda: fn(*args, **kwargs), name.replace("_", " "))

        method.__name__ = name
        return method

    namespace: dict[str, Any] = {name: make(name) for name in _DELEGATED}

    def init(self: Any, inner: Any, guard: OutageGuard) -> None:
        self._inner, self._guard = inner, guard

    namespace["__init__"] = init
    namespace["_backend"] = property(lambda self: getattr(self._inner, "_backend", self._inner))
    namespace["remove_session"] = lambda self: getattr(self._inner, "remove_session", lambda: None)()
    namespace["check_trial_is_updatable"] = lambda self, trial_id, state: self._inner.check_trial_is_updatable(
        trial_id, state)
    cls = type("GuardedStorage", (BaseStorage,), namespace)
    setattr(cls, "__abstractmethods__", frozenset())  # noqa: B010 - every abstract method is delegated above
    return cls(inner, guard)
