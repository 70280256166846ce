"""A run's directory: one file per finished shard and a manifest of their hashes, for ``--resume``.

Layout: ``manifest.json`` (the job it belongs to, its sha256, the shard size and count, and for each
finished shard its file and sha256) and ``shard-00000.safetensors`` ... (the shard's tensors, its JSON
metadata inside the file's header). Both are written atomically (temporary file, then rename), the shard
file first: a driver killed at any instant leaves either a finished shard recorded with its hash or a
shard to redo, never half a file. On resume a shard whose file is missing or whose bytes no longer match
the recorded sha256 is redone (and counted in :attr:`RunDirectory.redone`), never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bastion._files import atomic_write
from bastion.engine.shards import Shard
from bastion.errors import BastionError

__all__ = ["FORMAT", "RunDirectory", "ShardOutput", "job_digest"]

log = logging.getLogger(__name__)
FORMAT = "bastion-run/1"


@dataclass(frozen=True)
class ShardOutput:
    """What one shard produced: per-example ``tensors`` (first dimension = the shard's examples) and
    JSON-ready ``meta`` (counts, costs)."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def job_digest(job: Mapping[str, Any]) -> str:
    """sha256 of a job's canonical JSON: two runs with the same digest compute the same thing."""
    return hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()


class RunDirectory:
    """``RunDirectory(path, job, shards)``: opens (or starts) the run of ``job`` in ``path``.

    Refuses a directory that holds another job's run (its digest differs) or another sharding.
    :meth:`finished` lists the shards to skip; :meth:`save` records one; :meth:`load` reads one back.
    """

    def __init__(self, path: str | Path, job: Mapping[str, Any], shards: list[Shard]) -> None:
        self.path = Path(path)
        self.job, self.digest = dict(job), job_digest(job)
        self.shards = shards
        self.redone: list[int] = []
        self._done: dict[str, dict[str, str]] = {}
        manifest = self.path / "manifest.json"
        if self.path.exists() and not self.path.is_dir():
            raise BastionError(f"{self.path} is a file; --resume takes a directory")
        if manifest.is_file():
            try:
                old = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BastionError(
                    f"{manifest} cannot be read ({exc}); remove it to start the run afresh"
                ) from None
            if old.get("format") != FORMAT or old.get("job_sha256") != self.digest:
                raise BastionError(
                    f"{self.path} holds another run (its model, data, settings or seed differ); pass a new "
                    "--resume directory, or the command that started it"
                )
            if old.get("shards") != [len(shards), shards[0].stop - shards[0].start]:
                raise BastionError(
                    f"{self.path} was sharded differently; pass the shard size it was run with"
                )
            self._done = dict(old.get("done", {}))
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_manifest()

    def _file(self, shard: Shard) -> Path:
        return self.path / f"shard-{shard.index:05d}.safetensors"

    def _write_manifest(self) -> None:
        body = {"format": FORMAT, "job_sha256": self.digest, "job": self.job,
                "shards": [len(self.shards), self.shards[0].stop - self.shards[0].start],
                "done": self._done}  # fmt: skip
        atomic_write(
            self.path / "manifest.json", lambda fh: fh.write(json.dumps(body, indent=1, default=str))
        )

    def finished(self) -> list[Shard]:
        """The shards whose file is present and matches its recorded sha256 (others are redone)."""
        ok = []
        for shard in self.shards:
            entry = self._done.get(str(shard.index))
            if entry is None:
                continue
            file = self.path / entry["file"]
            if file.is_file() and hashlib.sha256(file.read_bytes()).hexdigest() == entry["sha256"]:
                ok.append(shard)
                continue
            log.warning(
                "%s: %s is missing or corrupt (sha256 differs): redoing it", self.path, shard.describe()
            )
            self.redone.append(shard.index)
            del self._done[str(shard.index)]
        return ok

    def save(self, shard: Shard, output: ShardOutput) -> None:
        """Write ``shard``'s output, then record it in the manifest (both atomically)."""
        from safetensors.torch import save

        data = save({k: v.detach().cpu().contiguous() for k, v in output.tensors.items()},
                    metadata={"meta": json.dumps(output.meta), "shard": str(shard.index)})  # fmt: skip
        atomic_write(self._file(shard), lambda fh: fh.write(data), "wb")
        self._done[str(shard.index)] = {
            "file": self._file(shard).name,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._write_manifest()

    def load(self, shard: Shard) -> ShardOutput:
        """A finished shard's output, read back (its hash was checked by :meth:`finished`)."""
        from safetensors import safe_open

        with safe_open(str(self._file(shard)), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no iterator)
            meta = json.loads((fh.metadata() or {}).get("meta", "{}"))
        return ShardOutput(tensors, meta)
