"""Where tasks run: in this process, in a local process pool, or on a Ray cluster.

Each executor yields (task, entry, error) as tasks finish: `entry` is the manifest entry the
worker returned, `error` a one-line description when the task raised (the runner may retry it).
At most one task per worker is in flight, so inputs are read only as fast as they are processed.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Iterable, Iterator

from mien.batch.plan import Task
from mien.batch.worker import BatchOptions, BatchWorker, init_process, run_in_process

Outcome = tuple[Task, "dict[str, Any] | None", "str | None"]


def one_line(error: BaseException | str) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class InlineExecutor:
    """Runs tasks one after another in this process (the single-process reference)."""

    workers = 1

    def __init__(self, options: BatchOptions) -> None:
        self.worker = BatchWorker(options)

    def run(self, tasks: Iterable[Task], out_dir: str) -> Iterator[Outcome]:
        for task in tasks:
            try:
                yield task, self.worker.run(task, out_dir), None
            except Exception as exc:
                yield task, None, f"{type(exc).__name__}: {one_line(exc)}"

    def close(self) -> None:
        self.worker.close()


class ProcessExecutor:
    """A local pool of worker processes (spawned; each loads the models once)."""

    def __init__(self, options: BatchOptions, workers: int) -> None:
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=init_process, initargs=(options,))

    def run(self, tasks: Iterable[Task], out_dir: str) -> Iterator[Outcome]:
        pending = iter(tasks)
        running: dict[Any, Task] = {}
        while True:
            while len(running) < self.workers and (task := next(pending, None)) is not None:
                running[self.pool.submit(run_in_process, task, out_dir)] = task
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    yield task, future.result(), None
                except Exception as exc:
                    yield task, None, one_line(exc)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RayExecutor:
    """Ray actors, one per worker CPU, each holding loaded models (`BatchWorker`).

    `address`: "local" starts a Ray instance on this machine with `workers` CPUs; "auto" joins the
    cluster this machine belongs to (RAY_ADDRESS or a running `ray start`); anything else is a
    cluster address ("ray://head:10001" or "head:6379"). mien must be installed on every node.
    Clusters started with `ray start` use token authentication (Ray >= 2.59): the token is taken
    from Ray's own places (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token).
    """

    def __init__(self, options: BatchOptions, address: str, workers: int | None) -> None:
        if address != "local":
            use_cluster_token()
        else:  # a one-machine instance: keep Ray on the loopback address (it picks the outward one otherwise)
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        self.ray = ray
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._options = options
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)
        self.actors = [self._actor_class.remote(options) for _ in range(self.workers)]

    def run(self, tasks: Iterable[Task], out_dir: str) -> Iterator[Outcome]:
        from ray.exceptions import RayActorError, RayError

        pending = iter(tasks)
        idle = list(self.actors)
        running: dict[Any, tuple[Any, Task]] = {}
        while True:
            while idle and (task := next(pending, None)) is not None:
                actor = idle.pop()
                running[actor.run.remote(task, out_dir)] = (actor, task)
            if not running:
                return
            done, _ = self.ray.wait(list(running), num_returns=1)
            for ref in done:
                actor, task = running.pop(ref)
                try:
                    yield task, self.ray.get(ref), None
                    idle.append(actor)
                except RayActorError as exc:  # the worker process died: replace it
                    self.actors.remove(actor)
                    replacement = self._actor_class.remote(self._options)
                    self.actors.append(replacement)
                    idle.append(replacement)
                    yield task, None, f"worker died: {one_line(exc)}"
                except RayError as exc:
                    idle.append(actor)
                    cause = getattr(exc, "cause", None) or exc
                    yield task, None, f"{type(cause).__name__}: {one_line(cause)}"

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []


def use_cluster_token() -> bool:
    """Turn Ray's token authentication on for this driver when a token is at hand and the mode is not
    set: a driver defaults to no token, which a `ray start` cluster (token auth by default since Ray
    2.59) refuses. A cluster without authentication accepts a driver that sends one. True if set."""
    if os.environ.get("RAY_AUTH_MODE"):
        return False
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(path):
        os.environ["RAY_AUTH_MODE"] = "token"
        return True
    return False


class _RayWorker:
    def __init__(self, options: BatchOptions) -> None:
        self.worker = BatchWorker(options)

    def run(self, task: Task, out_dir: str) -> dict[str, Any]:
        return self.worker.run(task, out_dir)
