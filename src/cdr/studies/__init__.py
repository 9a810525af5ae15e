"""Multi-run studies: hyper-parameter sweeps and the papers' reproduction tables.

A study is a set of cells (a cell = config overrides x seed), each an ordinary run
directory under the study directory. Cells that finished are skipped when a study is run
again, so an interrupted study resumes where it stopped.
"""
