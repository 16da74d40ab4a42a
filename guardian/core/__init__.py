"""The decisions, pure: the alert policy, the per-channel plan, the cleanup planner, the forecast, peaks,
anomalies and quiet times, with the plain records they use. No I/O and no clock: `now` is an argument.
"""
