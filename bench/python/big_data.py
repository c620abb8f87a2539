"""Baselines for `mp-bench queue-bytes`, `queue-zero-copy` and `pool-bytes`.

Usage:
  python3 big_data.py queue SIZE TOTAL RUNS WARMUP  # 1 producer process -> parent, Queue(8),
                                                    # bytes items
  python3 big_data.py shm SIZE TOTAL RUNS WARMUP    # the same, each item in a SharedMemory block
                                                    # of its own whose name crosses the Queue;
                                                    # the consumer reads every byte, closes and
                                                    # unlinks the block
  python3 big_data.py pool SIZE COUNT RUNS          # Pool(2).map(len, COUNT arguments of SIZE)
Prints the median over RUNS of bytes moved per second, as `value=<GB/s> unit=GB/s`
(1 GB = 1e9 bytes). The queue cases let WARMUP items cross before the clock starts, as
mp-bench does.
"""
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing import resource_tracker, shared_memory


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


def timed_drain(q, producer, take, warmup, expected):
    """Takes the warm-up items, then the rest until None, timed: GB/s of what `take` counts."""
    for _ in range(warmup):
        take(q.get())
    start = time.perf_counter()
    got = 0
    while (item := q.get()) is not None:
        got += take(item)
    elapsed = time.perf_counter() - start
    producer.join()
    assert got == expected
    return got / elapsed / 1e9


def take_block(name, size):
    block = shared_memory.SharedMemory(name=name)
    got = len(bytes(block.buf[:size]))  # reads every byte
    block.close()
    block.unlink()
    return got


def queue_run(produce, take, size, total, warmup):
    count = max(1, total // size)
    q = mp.Queue(8)
    p = mp.Process(target=produce, args=(q, size, warmup + count))
    p.start()
    return timed_drain(q, p, take, warmup, size * count)


def queue_bytes(size, total, warmup):
    return queue_run(produce_bytes, len, size, total, warmup)


def queue_shm(size, total, warmup):
    return queue_run(produce_shm, lambda name: take_block(name, size), size, total, warmup)


def pool_bytes(size, count, _warmup):
    args = [bytes(size) for _ in range(count)]
    with mp.Pool(2) as pool:
        pool.map(len, [b""] * 4)  # warm-up: workers started
        start = time.perf_counter()
        assert sum(pool.map(len, args)) == size * count
        return size * count / (time.perf_counter() - start) / 1e9


def main():
    # One resource tracker for every process, started before the producer: else the producer
    # starts its own, which unlinks, when the producer exits, the blocks still in the queue.
    resource_tracker.ensure_running()
    kind, size, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    warmup = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    bench = {"queue": queue_bytes, "shm": queue_shm, "pool": pool_bytes}[kind]
    runs_gbps = [bench(size, n, warmup) for _ in range(runs)]
    print(f"value={statistics.median(runs_gbps):.4f} unit=GB/s")


if __name__ == "__main__":
    main()
