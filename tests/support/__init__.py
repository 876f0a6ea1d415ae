"""What the tests share: backends, web servers, scripted flows, models, examples and workers.

``tests/`` is on ``sys.path`` (pyproject's ``pythonpath``), so test modules import these as
``support.<module>``; worker processes started with ``multiprocessing`` (spawn) inherit that
path and import ``support.workers.<module>`` the same way.
"""
