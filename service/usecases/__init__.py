"""The application layer: study and trial use cases between the database and the engine.

Routes stay thin and call these functions; each is one transaction. Writes to a study take its row
lock first (``study_queries.lock_study``), which serialises them per study across every server
process: trial numbers stay gapless, a trial is never handed out twice, and the history cache stays
exact.

One module per aggregate: ``study_lifecycle`` (create, find, delete, what a study learns from and
how far that is trusted), ``ask_tell`` (ask, tell, heartbeat, enqueue, reap) and ``proposals`` (the
fresh part of an ask: drafted by the engine outside the lock, recorded inside it). ``context``
holds what they all need, built once per app.
"""
