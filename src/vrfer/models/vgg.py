"""Placeholder: the paper's VGG-face, VGG-f and Barsoum's VGG-13 are written here (issue 3)."""
