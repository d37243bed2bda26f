"""Statistics and report rendering, computed from run records alone."""
