"""ASGI entry point for uvicorn workers (`uvicorn service.asgi:app`)."""

import os

# One BLAS thread per server process: asks are small matrix work, and a multithreaded BLAS on a
# busy machine made them 3-20x slower (measured on the engine's Gaussian process).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from service.app import create_app  # noqa: E402  (after the BLAS setting, which must come first)

app = create_app(tune_gc=True)
