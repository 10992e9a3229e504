"""``python -m xtalspec.bench``: the same as ``xtalspec bench``."""

from .runner import main

if __name__ == "__main__":
    raise SystemExit(main())
