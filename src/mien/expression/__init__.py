"""Expression-level estimates: action units (and, later, expression classes)."""
