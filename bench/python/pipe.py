"""Baseline for `mp-bench pipe`: small messages one way through Pipe(duplex=False).

Usage: python3 pipe.py MESSAGES RUNS
Prints the median over RUNS of messages per second, as `value=<msg/s> unit=msg/s`.
"""
import multiprocessing as mp
import statistics
import sys
import time


def send_all(w, n):
    for i in range(n):
        w.send(i)
    w.close()


def once(n):
    r, w = mp.Pipe(duplex=False)
    start = time.perf_counter()
    p = mp.Process(target=send_all, args=(w, n))
    p.start()
    w.close()
    for _ in range(n):
        r.recv()
    p.join()
    return n / (time.perf_counter() - start)


def main():
    n, runs = int(sys.argv[1]), int(sys.argv[2])
    print(f"value={statistics.median(once(n) for _ in range(runs)):.1f} unit=msg/s")


if __name__ == "__main__":
    main()
