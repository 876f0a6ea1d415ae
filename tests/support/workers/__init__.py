"""Functions that run in child processes (``multiprocessing`` spawn imports them by module)."""
