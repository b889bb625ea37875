"""Read the records of a wandb offline run file (``run-*.wandb``), for tests.

wandb >= 0.2x writes offline runs only as this binary log (LevelDB's log format: 32 KiB blocks of
records with a 7-byte header, after a 7-byte file header) of ``wandb_internal_pb2.Record``
protobufs, and ships no reader for it, so the tests read it here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: str | Path) -> Iterator[object]:
    """Yield every ``wandb_internal_pb2.Record`` in a ``run-*.wandb`` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a wandb run file (header {data[:7]!r})")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        else:  # zero padding at the end of a block
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        record = pb.Record()
        record.ParseFromString(pending)
        yield record


def history_keys(path: str | Path) -> set[str]:
    """Every key logged to the run's history (metrics, images)."""
    keys: set[str] = set()
    for record in iter_records(path):
        if record.WhichOneof("record_type") == "history":
            keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
    return keys
