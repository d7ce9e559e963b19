"""Dataset scale for ``sam-age age``: many photos, many processes, one manifest, resumable.

Floor 5 (applications), beside ``training/`` and ``evaluation.py``; the CLI (floor 6)
only parses flags and reports. The parts, bottom up:

* :mod:`.listing` -- the inputs, their unique output names, the deterministic split;
* :mod:`.manifest` -- ``OUT/manifest.jsonl`` from per-process part files (append +
  fsync per batch, merged atomically), and what ``OUT`` already holds;
* :mod:`.outputs` -- the request, file names per ``--layout``/``--format``, staging and
  the rename into place (a result is whole or absent);
* :mod:`.loader` -- reading, detection and alignment in ``DataLoader`` workers;
* :mod:`.handshake` -- the end-of-run handshake through torchrun's store (no rank ever
  waits for another; rank, world and device come from :mod:`sam_age.launch`);
* :mod:`.runner` -- one rank's loop: decide (skip / refuse / do), prepare, age the faces
  of several photos per forward pass, write, record.

A single process (no torchrun) is rank 0 of 1 and goes through the same code: its run
writes the manifest too, and a re-run after Ctrl-C or a kill skips what is done.

Nothing is imported here, so that the CLI can read :mod:`.outputs`' names (formats,
layouts) without importing torch; import the submodules.
"""
