"""What the dashboard shows, computed from a study's rows: pure numpy, bounded outputs.

Each function takes arrays or small lists read by ``service.usecases.insights`` and returns a
summary whose size is bounded by its arguments (points, bins), never by the study's size, so a
page over 100,000 trials sends the browser a few thousand numbers. Nothing here does I/O.
"""
