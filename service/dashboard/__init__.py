"""The web dashboard: page shells served at ``/ui`` that draw a study from the API.

A page carries no data: its script reads ``/v1`` (the insights and the study, trial and pruner
resources) with the key the browser holds for its session, so the dashboard is one more client
of the same use cases, under the same auth, and never a second data path.
"""
