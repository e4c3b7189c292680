"""``lndeploy bench``: latency and throughput per backend, with PyTorch eager as the baseline.

``bench(target, ...)`` -> :class:`BenchReport`; ``load_report(path)`` and ``format_compare(a, b)``
read and compare two saved reports. Heavy libraries are imported only when a benchmark runs.
"""

from lndeploy.benchmark.core import DEFAULT_BATCHES, DEFAULT_BUDGET, bench
from lndeploy.benchmark.report import BenchReport, compare, format_compare, load_report
from lndeploy.benchmark.runners import BACKENDS

__all__ = ["bench", "BenchReport", "compare", "format_compare", "load_report", "BACKENDS",
           "DEFAULT_BATCHES", "DEFAULT_BUDGET"]
