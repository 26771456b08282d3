"""Quality benchmarks: DyESP's engine against the usual HPO peers on tabular and surrogate tasks.

`python -m benchmarks.quality` is the entry point; see `benchmarks/quality.py`. Nothing in here is
imported by the service: the package only *reads* `service.engine` through `optimizers/dyesp.py`.
"""
