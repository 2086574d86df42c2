"""Tests of ``marginkit.losses`` (a package, so its helper ``reference`` imports relatively)."""
