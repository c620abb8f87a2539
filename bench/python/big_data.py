"""Baselines for `mp-bench queue-bytes`, `queue-zero-copy` and `pool-bytes`.

Usage:
  python3 big_data.py queue SIZE TOTAL RUNS   # 1 producer process -> parent, Queue(8), bytes items
  python3 big_data.py shm SIZE TOTAL RUNS     # the same, each item in a SharedMemory block of its
                                              # own whose name crosses the Queue; the consumer
                                              # reads every byte, closes and unlinks the block
  python3 big_data.py pool SIZE COUNT RUNS    # Pool(2).map(len, COUNT arguments of SIZE bytes)
Prints the median over RUNS of bytes moved per second, as `value=<GB/s> unit=GB/s`
(1 GB = 1e9 bytes).
"""
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing import shared_memory


def produce_bytes(q, size, count):
    data = bytes(size)
    for _ in range(count):
        q.put(data)
    q.put(None)


def produce_shm(q, size, count):
    data = bytes(size)
    for _ in range(count):
        block = shared_memory.SharedMemory(create=True, size=size)
        block.buf[:size] = data
        q.put(block.name)
        block.close()  # the consumer unlinks it
    q.put(None)


def queue_bytes(size, total):
    count = max(1, total // size)
    q = mp.Queue(8)
    start = time.perf_counter()
    p = mp.Process(target=produce_bytes, args=(q, size, count))
    p.start()
    got = 0
    while (item := q.get()) is not None:
        got += len(item)
    p.join()
    assert got == size * count
    return got / (time.perf_counter() - start) / 1e9


def queue_shm(size, total):
    count = max(1, total // size)
    q = mp.Queue(8)
    start = time.perf_counter()
    p = mp.Process(target=produce_shm, args=(q, size, count))
    p.start()
    got = 0
    while (name := q.get()) is not None:
        block = shared_memory.SharedMemory(name=name)
        got += len(bytes(block.buf[:size]))  # reads every byte
        block.close()
        block.unlink()
    p.join()
    assert got == size * count
    return got / (time.perf_counter() - start) / 1e9


def pool_bytes(size, count):
    args = [bytes(size) for _ in range(count)]
    with mp.Pool(2) as pool:
        pool.map(len, [b""] * 4)  # warm-up: workers started
        start = time.perf_counter()
        assert sum(pool.map(len, args)) == size * count
        return size * count / (time.perf_counter() - start) / 1e9


def main():
    kind, size, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    bench = {"queue": queue_bytes, "shm": queue_shm, "pool": pool_bytes}[kind]
    print(f"value={statistics.median(bench(size, n) for _ in range(runs)):.4f} unit=GB/s")


if __name__ == "__main__":
    main()
