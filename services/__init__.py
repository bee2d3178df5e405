"""Thin capability services of the Sunday ML mesh, each on top of the shared runtime in `mesh/`."""
