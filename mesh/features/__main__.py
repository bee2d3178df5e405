"""`python -m mesh.features apply|replay|stats|offline` (see `--help`)."""

from mesh.features._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
