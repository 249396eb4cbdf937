"""The error a sweep stops with, whichever part of it (storage, study, workers) failed."""


class SweepError(RuntimeError):
  """The sweep cannot go on (storage, study, workers): one-line message."""
