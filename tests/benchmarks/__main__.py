"""Run every benchmark: python -m tests.benchmarks (make bench). Each prints its own figures."""

import importlib
import pkgutil
import sys
from pathlib import Path

if __name__ == "__main__":
    wanted = set(sys.argv[1:])
    sys.argv = sys.argv[:1]  # each benchmark parses its own defaults
    for module in sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])):
        if module.startswith("bench_") and (not wanted or module in wanted):
            print(f"\n=== {module} ===", flush=True)
            importlib.import_module(f"tests.benchmarks.{module}").main()
