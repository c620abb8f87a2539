"""Baseline for `mp-bench dict`.

Usage:
  python3 dict.py OPS RUNS    # Manager().dict(), 2 processes doing OPS operations in all
Each process alternates `d[k] = v` and `d.get(k)` over 1000 keys; timing starts when both
are ready (a Barrier) and ends when both have finished. Prints the median over RUNS of
operations per second, as `value=<ops/s> unit=ops/s`.
"""
import multiprocessing as mp
import statistics
import sys
import time


def worker(d, barrier, seed, ops):
    barrier.wait()
    key = seed
    for i in range(ops // 2):
        key = (key * 1103515245 + 12345) % 1000
        d[key] = i
        d.get((key * 7) % 1000)


def run(ops):
    with mp.Manager() as manager:
        d = manager.dict()
        barrier = mp.Barrier(3)
        procs = [mp.Process(target=worker, args=(d, barrier, s, ops // 2)) for s in (1, 2)]
        for p in procs:
            p.start()
        barrier.wait()
        start = time.perf_counter()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        assert len(d) > 0
        return (ops // 4 * 4) / elapsed


def main():
    ops, runs = int(sys.argv[1]), int(sys.argv[2])
    print(f"value={statistics.median(run(ops) for _ in range(runs)):.1f} unit=ops/s")


if __name__ == "__main__":
    main()
