"""Injection-built training sets (the ``injected`` data source)."""
