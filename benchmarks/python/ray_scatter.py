"""The scatter workload on Ray's object store, for comparison with the scatter benchmark.

Same layout as ``scatter --workloads scatter --processes 2 --workers 1``: one producer
process makes every payload and reads its own half (payloads with an even index); one
consumer process reads the other half, which crosses Ray's object store. Payloads are made
as the scatter benchmark makes them (a copy of a random template with its index written into
the first 8 bytes), and every payload is read whole by its reader (a sum of its 64-bit
words, checked against the sum the payload must have), on both sides.

Flow control as in scatter: the producer sends the consumer one batch of object refs per
epoch (``--batch`` bytes of payloads, at least one), at most ``--window`` batches in flight.
The clock starts before the first payload is made and stops when the consumer has checked
the last batch (the producer's own half is checked as it is made).

Variants (how the consumer gets the objects):

- ``get``: the producer ``ray.put``s each payload (one copy into the shared object store);
  the consumer receives the refs inside a list and calls ``ray.get`` on the whole batch
  (numpy arrays come back as read-only views of the store's shared memory, no copy).
- ``args``: the same puts, but the refs are the consumer method's arguments, so Ray resolves
  them before the call.
- ``return``: a producer actor (a third process) makes the consumer's payloads and returns
  each batch (Ray stores return values of more than 100 KiB in the object store); the
  consumer gets the batch by its ref. The driver still makes and reads its own half.

Usage (a Python environment with ``ray`` and ``numpy``; one node started by the script)::

    python benchmarks/python/ray_scatter.py [--sizes 64KiB,1MiB,16MiB] [--bytes 256MiB]
        [--reps 5] [--variants get,args,return]

Prints one row per size and variant: the median MB/s (10^6 payload bytes read by consumers
per second of the timed interval) and the individual repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import ray

UNITS = {'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30}
WORD = np.dtype('<u8')


def parse_size(text: str) -> int:
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * factor
    return int(text)


class Payloads:
    """Payload ``i``: the template with ``i`` in its first word; its sum is known."""

    def __init__(self, size: int) -> None:
        if size < 8 or size % 8:
            raise ValueError(f'payload size {size}: a multiple of 8 bytes, at least 8')
        rng = np.random.default_rng(size)
        self.template = rng.integers(0, 256, size, dtype=np.uint8)
        words = self.template.view(WORD)
        self.rest = int(words[1:].sum(dtype=np.uint64))

    def make(self, index: int) -> np.ndarray:
        data = self.template.copy()
        data[:8].view(WORD)[0] = index
        return data

    def verify(self, data: np.ndarray) -> int:
        """Reads every byte; returns the payload's index or raises."""
        if data.nbytes != self.template.nbytes:
            raise ValueError(f'payload of {data.nbytes} bytes, expected {self.template.nbytes}')
        words = data.view(WORD)
        index = int(words[0])
        total = int(words.sum(dtype=np.uint64))
        expected = (self.rest + index) % (1 << 64)
        if total != expected:
            raise ValueError(f'payload {index}: checksum {total:#x}, expected {expected:#x}')
        return index


@ray.remote(num_cpus=0)
class Consumer:
    def __init__(self, size: int) -> None:
        self.payloads = Payloads(size)

    def check(self, arrays: list) -> int:
        for data in arrays:
            index = self.payloads.verify(data)
            if index % 2 != 1:
                raise ValueError(f'payload {index} reached the consumer, owned by the producer')
        return sum(a.nbytes for a in arrays)

    def get_batch(self, refs: list) -> int:
        return self.check(ray.get(refs))

    def args_batch(self, *arrays: np.ndarray) -> int:
        return self.check(list(arrays))

    def get_returned(self, refs: list) -> int:
        # Inside a list, so that Ray hands over the ref rather than resolving it first.
        return self.check(ray.get(refs[0]))


@ray.remote(num_cpus=0)
class Producer:
    """Makes the payloads in its own process (the ``return`` variant's producer)."""

    def __init__(self, size: int) -> None:
        self.payloads = Payloads(size)

    def make(self, indices: list) -> list:
        return [self.payloads.make(i) for i in indices]


def run_point(size: int, total: int, batch: int, window: int, variant: str) -> float:
    """One repetition; returns MB/s read by both readers."""
    payloads = Payloads(size)
    consumer = Consumer.remote(size)
    producer = Producer.remote(size) if variant == 'return' else None
    # Both actors are up (and their imports done) before the clock starts.
    ray.get(consumer.check.remote([]))
    if producer is not None:
        ray.get(producer.make.remote([]))
    in_flight: list = []
    read = 0
    started = time.perf_counter()
    for first in range(0, total, batch):
        indices = range(first, min(first + batch, total))
        remote = [i for i in indices if i % 2 == 1]
        for i in indices:
            if i % 2 == 0:
                data = payloads.make(i)
                payloads.verify(data)
                read += data.nbytes
        if remote:
            if variant == 'get':
                refs = [ray.put(payloads.make(i)) for i in remote]
                in_flight.append(consumer.get_batch.remote(refs))
            elif variant == 'args':
                refs = [ray.put(payloads.make(i)) for i in remote]
                in_flight.append(consumer.args_batch.remote(*refs))
            else:
                made = producer.make.remote(remote)
                in_flight.append(consumer.get_returned.remote([made]))
        while len(in_flight) >= window:
            done, in_flight = ray.wait(in_flight, num_returns=1)
            read += ray.get(done[0])
    read += sum(ray.get(in_flight))
    elapsed = time.perf_counter() - started
    if read != total * size:
        raise RuntimeError(f'read {read} bytes, expected {total * size}')
    ray.kill(consumer)
    if producer is not None:
        ray.kill(producer)
    return total * size / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='64KiB,1MiB,16MiB')
    parser.add_argument('--bytes', default='256MiB', help='payload bytes per point')
    parser.add_argument('--batch', default='8MiB', help='payload bytes per epoch')
    parser.add_argument('--window', type=int, default=4, help='epochs in flight')
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--variants', default='get,args,return')
    args = parser.parse_args()
    per_point = parse_size(args.bytes)
    batch_bytes = parse_size(args.batch)
    # An object store large enough for every batch in flight and Ray's own margin.
    ray.init(num_cpus=2, object_store_memory=max(2 << 30, 4 * args.window * batch_bytes),
             include_dashboard=False, log_to_driver=False)
    print('| size | variant | MB/s (median) | repetitions |')
    print('|---:|---|---:|---|')
    for size in [parse_size(s) for s in args.sizes.split(',')]:
        total = max(2, per_point // size)
        batch = max(1, batch_bytes // size)
        for variant in args.variants.split(','):
            rates = [run_point(size, total, batch, args.window, variant) for _ in range(args.reps)]
            reps = ' '.join(f'{r:.0f}' for r in rates)
            print(f'| {size >> 10} KiB | {variant} | {statistics.median(rates):.0f} | {reps} |',
                  flush=True)
    ray.shutdown()


if __name__ == '__main__':
    main()
