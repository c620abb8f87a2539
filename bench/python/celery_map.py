"""Baseline for `mp-bench cluster-map --vs-python`: Celery with a prefork pool of 2, on a
Redis broker and result backend.

Usage: python celery_map.py REDIS_URL TASKS RUNS
Starts a worker (`celery worker --pool=prefork --concurrency=2`), sends TASKS tasks as one
group of `square.s(i)`, waits for all results, and prints the median tasks per second over
RUNS as `value=<tasks/s> unit=tasks/s`.
"""
import os
import statistics
import subprocess
import sys
import time

from celery import Celery, group

# The worker imports this module too: it finds the URL in the environment.
URL = os.environ.get("CELERY_MAP_URL") or (sys.argv[1] if len(sys.argv) > 1 else "")
app = Celery("celery_map", broker=URL, backend=URL)
app.conf.update(
    worker_prefetch_multiplier=1,
    task_acks_late=False,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task
def square(x):
    return x * x


def main():
    tasks, runs = int(sys.argv[2]), int(sys.argv[3])
    here = os.path.dirname(os.path.abspath(__file__))
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_map", "worker", "--pool=prefork",
         "--concurrency=2", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=here, env={**os.environ, "CELERY_MAP_URL": URL},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while not app.control.ping(timeout=0.5):
            if time.time() > deadline or worker.poll() is not None:
                raise SystemExit("the celery worker did not start")
        square.delay(1).get(timeout=60)  # warm-up
        rates = []
        for _ in range(runs):
            start = time.perf_counter()
            result = group(square.s(i) for i in range(tasks)).apply_async()
            out = result.get(timeout=3600)
            rates.append(tasks / (time.perf_counter() - start))
            assert out == [i * i for i in range(tasks)]
            result.forget()
        print(f"value={statistics.median(rates):.1f} unit=tasks/s")
    finally:
        worker.terminate()
        worker.wait(timeout=60)


if __name__ == "__main__":
    main()
