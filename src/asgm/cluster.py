"""Independent tasks (scan tiles, training runs) in this process or on a dask.distributed cluster.

One setting, the same for the region scan and the experiment grid: ``synchronous`` (one task after
another in this process), ``local`` (a LocalCluster of ``workers`` processes on this machine) or the
address of a running dask scheduler (``tcp://host:8786``) to spread the tasks over more machines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence

from asgm.progress import progress_bar

#: Environment variables that cap the threads of TensorFlow (and the BLAS behind numpy) in a worker.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_threads(workers: int) -> int:
    """Threads each of ``workers`` local workers gets, so that together they use the machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)


def run_tasks(function: Callable, items: Sequence, scheduler: str = "synchronous", workers: int = 1,
              progress: bool = True, desc: str = "tasks", unit: str = "task", describe: Callable | None = None) -> Iterator[tuple[int, object]]:
    """Call ``function`` on each of ``items`` and yield ``(index, result)`` as each finishes.

    Parameters
    ----------
    scheduler
        ``synchronous``, ``local`` or a scheduler address (see the module's description).
    workers
        Processes of the local cluster; each gets an equal share of the cores for TensorFlow
        (:data:`THREAD_VARIABLES`), so two workers training at once do not fight over the same cores.
    describe
        ``describe(item)`` -> text shown beside the progress bar while the item runs in this process.

    The first exception of a task is raised here (remaining tasks are cancelled with the cluster).
    """
    bar = progress_bar(total=len(items), desc=desc, unit=unit, disable=not progress or not items)
    try:
        if scheduler == "synchronous" or not items:
            for i, item in enumerate(items):
                if describe is not None:
                    bar.set_postfix_str(describe(item))
                yield i, function(item)
                bar.update()
            return
        yield from _on_cluster(function, items, scheduler, workers, bar)
    finally:
        bar.close()


def _on_cluster(function: Callable, items: Sequence, scheduler: str, workers: int, bar) -> Iterator[tuple[int, object]]:
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler == "local":
        threads = str(worker_threads(workers))
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, env={name: threads for name in THREAD_VARIABLES})
        client = Client(cluster)
    else:
        cluster, client = None, Client(scheduler)
    try:
        futures = client.map(function, items, pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        for future in as_completed(futures):
            yield index[future.key], future.result()
            bar.update()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
