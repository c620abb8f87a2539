"""Baselines for `mp-bench pool-imap` and `pool-apply-async`.

Usage:
  python3 pool.py imap TASKS RUNS      # Pool(2).imap(square, range(TASKS), chunksize=1)
  python3 pool.py apply TASKS RUNS     # TASKS apply_async(square, (i,)), then get() each
Prints the median over RUNS of microseconds per task, as `value=<us> unit=us/task`.
"""
import multiprocessing as mp
import statistics
import sys
import time


def square(x):
    return x * x


def imap(pool, n):
    start = time.perf_counter()
    total = sum(pool.imap(square, range(n), chunksize=1))
    assert total == sum(i * i for i in range(n))
    return (time.perf_counter() - start) / n * 1e6


def apply(pool, n):
    start = time.perf_counter()
    results = [pool.apply_async(square, (i,)) for i in range(n)]
    total = sum(r.get() for r in results)
    assert total == sum(i * i for i in range(n))
    return (time.perf_counter() - start) / n * 1e6


def main():
    kind, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    bench = imap if kind == "imap" else apply
    with mp.Pool(2) as pool:
        pool.map(square, range(10))  # warm-up: workers started
        per_run = [bench(pool, n) for _ in range(runs)]
    print(f"value={statistics.median(per_run):.3f} unit=us/task")


if __name__ == "__main__":
    main()
