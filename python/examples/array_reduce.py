"""A Python producer hands numpy arrays to a Rust Timely dataflow without copies.

1. This program computes arrays straight into its ZeroMQ peer's shared memory
   (``arrays.ArrayWriter``) and stores them: only keys leave the process.
2. The Rust example ``array_reduce`` (two processes of a Timely cluster) reads each array
   in place as a ``PodArray<f64>``, from this process's shared memory, and sums them.
3. The sum comes back as an array stored on this process's peer, read here as a numpy
   view of the received bytes.

    cargo build --release --example array_reduce
    python python/examples/array_reduce.py target/release/examples/array_reduce
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from proxystore_rs import ZmqConnector
from proxystore_rs import ZmqKey
from proxystore_rs import arrays


def main(binary: str, count: int = 8, length: int = 1 << 20) -> None:
    with ZmqConnector() as peer, tempfile.TemporaryDirectory() as tmp:
        keys = []
        for i in range(count):
            writer = arrays.ArrayWriter(peer, length, np.float64)
            writer.array[:] = i  # computed in place: this memory becomes the object
            keys.append(writer.publish())
        keys_file = Path(tmp) / 'keys'
        keys_file.write_text(''.join(f'{key.text}\n' for key in keys))

        done = subprocess.run(
            [binary, 'reduce', '--keys', str(keys_file), '--reply-to', peer.endpoint],
            capture_output=True,
            text=True,
            check=True,
        )
        lines = done.stdout.splitlines()
        result = next(line.split(' ', 1)[1] for line in lines if line.startswith('result '))
        mapped = sum(int(line.split()[1]) for line in lines if line.startswith('mapped_reads'))

        total = arrays.get_array(peer, ZmqKey(result), np.float64)
        expected = sum(range(count))
        assert total is not None and np.all(total == expected), 'wrong sum'
        print(
            f'{count} arrays of {length} f64 summed by the Rust dataflow: every element '
            f'is {total[0]:g} (expected {expected}); {mapped} of {count} arrays were read '
            f'in place from shared memory',
        )


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'target/debug/examples/array_reduce')
