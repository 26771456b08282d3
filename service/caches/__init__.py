"""Per-process caches of what every ask reads, so an ask does not rebuild it from the database.

One module per cached thing: ``history`` (a study's trials, caught up row by row), ``priors``
(what a study learns from earlier studies), ``pruners`` (a study's active pruner model) and
``spaces`` (parsed search spaces). Each is keyed by study, bounded by its own ``MAX_STUDIES``
(``lru.LRU``: the least recently used study goes first) and exact across server processes: an
entry is checked against the database (a revision or a version id) before it is served, so an
evicted study is simply read again on its next use.
"""
