"""Argument types shared by the command lines (jaxint8-demo, jaxint8-models)."""

from __future__ import annotations

import argparse


def int_at_least(low: int):
    """An argparse ``type``: an integer >= ``low``, else a usage error that says so."""
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    parse.__name__ = f"integer >= {low}"
    return parse
