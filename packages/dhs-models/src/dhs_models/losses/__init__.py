"""Classification losses and per-sample loss weightings."""
