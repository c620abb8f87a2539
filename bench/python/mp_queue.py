"""Baselines for `mp-bench queue` and `queue-mpmc`.

Usage:
  python3 mp_queue.py spsc ITEMS RUNS          # 1 producer process -> parent, Queue(1024), ints
  python3 mp_queue.py mpmc ITEMS RUNS          # 4 producers -> 2 consumer processes, 64-byte items
Prints the median over RUNS of items per second, as `value=<items/s> unit=items/s`.
"""
import multiprocessing as mp
import statistics
import sys
import time


def produce_ints(q, n):
    for i in range(n):
        q.put(i)


def produce_bytes(q, n):
    item = bytes(64)
    for _ in range(n):
        q.put(item)


def consume(q, done):
    n = 0
    while q.get() is not None:
        n += 1
    done.put(n)


def spsc(items):
    q = mp.Queue(1024)
    start = time.perf_counter()
    p = mp.Process(target=produce_ints, args=(q, items))
    p.start()
    for _ in range(items):
        q.get()
    p.join()
    return items / (time.perf_counter() - start)


def mpmc(items):
    q = mp.Queue(1024)
    done = mp.Queue()
    start = time.perf_counter()
    consumers = [mp.Process(target=consume, args=(q, done)) for _ in range(2)]
    producers = [mp.Process(target=produce_bytes, args=(q, items // 4)) for _ in range(4)]
    for p in consumers + producers:
        p.start()
    for p in producers:
        p.join()
    for _ in consumers:
        q.put(None)
    total = sum(done.get() for _ in consumers)
    for p in consumers:
        p.join()
    assert total == items // 4 * 4
    return total / (time.perf_counter() - start)


def main():
    kind, items, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    bench = spsc if kind == "spsc" else mpmc
    print(f"value={statistics.median(bench(items) for _ in range(runs)):.1f} unit=items/s")


if __name__ == "__main__":
    main()
