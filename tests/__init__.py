"""Test suite (a regular package, so ``from tests import naive`` finds this folder first)."""
