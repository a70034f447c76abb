"""Importers: result folders of other tools turned into the accuracy-point table.

- `sparse_frontier`: the reference study's pipeline (``results/<task>/.../evaluation_results_N.json``);
- `kvpress`: NVIDIA KVPress evaluation folders (``metrics.json``, ``predictions.csv``,
  ``config.yaml``).

Each has ``read_*`` (the table) and ``import_*`` (the table with what was read and skipped);
`write_table` writes one as the measurement side does (.parquet, .csv or .jsonl).
"""

from scalelaw.importers.common import ImportResult, ResultFolderError, Skip, write_table
from scalelaw.importers.kvpress import import_kvpress, read_kvpress
from scalelaw.importers.sparse_frontier import import_sparse_frontier, read_sparse_frontier

__all__ = [
    "ImportResult",
    "ResultFolderError",
    "Skip",
    "import_kvpress",
    "import_sparse_frontier",
    "read_kvpress",
    "read_sparse_frontier",
    "write_table",
]
