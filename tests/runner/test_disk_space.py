"""A full disk in one line (runner.disk_space), whichever way the write reported it."""

from __future__ import annotations

import errno
from pathlib import Path

from runner.disk_space import DiskFull, disk_full_error, disk_full_message, looks_like_disk_full


def _chained(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as err:
            raise outer from err
    except BaseException as exc:
        return exc


def test_torch_saves_short_write_is_a_full_disk_only_when_the_disk_is_full(tmp_path: Path) -> None:
    torch_error = _chained(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4054"),
                           RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed"))
    assert looks_like_disk_full(torch_error, free=0)
    assert not looks_like_disk_full(torch_error, free=10 << 30)  # the same words with space left: something else
    assert disk_full_error(tmp_path / "x.ckpt", ValueError("bad"), free=0) is None
    full = disk_full_error(tmp_path / "last.ckpt", torch_error, free=0)
    assert isinstance(full, DiskFull) and full.errno == errno.ENOSPC
    assert str(full).startswith(f"No space left on device writing {tmp_path / 'last.ckpt'} (")
    assert str(full).endswith(" free); earlier checkpoints are intact")


def test_the_message_is_found_anywhere_in_the_chain(tmp_path: Path) -> None:
    plain = _chained(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "a.csv")), RuntimeError("wrap"))
    assert disk_full_message(plain).startswith(f"No space left on device writing {tmp_path / 'a.csv'} (")
    assert disk_full_message(RuntimeError("other")) is None


def test_a_checkpoint_that_fills_a_small_tmpfs_is_one_line_and_frees_its_space(tmp_path: Path) -> None:
    """A real full disk: torch.save of 24 MB into a 16 MB tmpfs through the project's checkpoint writer."""
    import os
    import shutil
    import subprocess

    import pytest
    import torch

    from runner.checkpoint_io import LocalAtomicCheckpointIO

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (mount -t tmpfs): the full-disk write is not run here")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not allowed here: {mounted.stderr.strip()}")
    try:
        io = LocalAtomicCheckpointIO()
        io.save_checkpoint({"w": torch.zeros(1_000_000)}, disk / "epoch_000.ckpt")  # 4 MB: fits
        try:
            io.save_checkpoint({"w": torch.zeros(6_000_000)}, disk / "last.ckpt")
        except DiskFull as err:
            message = str(err)
        else:
            raise AssertionError("a 24 MB checkpoint fitted into 16 MB")
        assert message.startswith(f"No space left on device writing {disk / 'last.ckpt'} (")
        assert message.endswith(" free); earlier checkpoints are intact")
        assert sorted(p.name for p in disk.iterdir()) == ["epoch_000.ckpt"]  # no partial file left
        assert shutil.disk_usage(disk).free > 10 << 20  # its space is given back at once
        assert torch.load(disk / "epoch_000.ckpt")["w"].shape == (1_000_000,)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
