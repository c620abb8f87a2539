"""Baseline for `mp-bench process-start`: start + join of a trivial process.

Usage: python3 process_start.py METHOD ITERS RUNS
Prints the median over RUNS of the mean milliseconds per start + join, as `value=<ms> unit=ms`.
"""
import multiprocessing as mp
import statistics
import sys
import time


def noop():
    pass


def main():
    method, iters, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = mp.get_context(method)
    warm = ctx.Process(target=noop)  # starts the fork server, if any
    warm.start()
    warm.join()
    per_run = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(iters):
            p = ctx.Process(target=noop)
            p.start()
            p.join()
        per_run.append((time.perf_counter() - start) / iters * 1e3)
    print(f"value={statistics.median(per_run):.4f} unit=ms")


if __name__ == "__main__":
    main()
