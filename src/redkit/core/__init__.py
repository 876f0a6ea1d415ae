"""The sans-I/O core: operations as data, flows and their runners, keys, clocks, scripts.

Nothing here performs I/O or imports any other part of redkit.
"""
