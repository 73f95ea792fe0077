"""Evaluators: the components chosen by ``[[evaluate]]`` entries of a run spec (see :mod:`.base`)."""
