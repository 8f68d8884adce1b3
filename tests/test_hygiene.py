"""Robustness: a file hashed in bounded memory, hostile names in the study report, the reason
a demand is left unserved, careless ``lvplan plan`` arguments."""

from __future__ import annotations

import hashlib
import tracemalloc

from lvplan.study.run import sha256_file


# -- hashing an input file ------------------------------------------------------------------------
def test_sha256_of_a_file_reads_it_in_chunks(tmp_path):
    """The study's input fingerprints: a 64 MB file is hashed with a few hundred kB of buffer
    (before: ``path.read_bytes()``, the whole file in memory at once)."""
    size = 64 * 2**20
    f = tmp_path / "big.bin"
    with f.open("wb") as fh:  # sparse: no disk used
        fh.truncate(size)
    tracemalloc.start()
    try:
        digest = sha256_file(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(bytes(size)).hexdigest()
    assert peak < 2 * 2**20, f"peak {peak / 2**20:.1f} MB for a 64 MB file"
