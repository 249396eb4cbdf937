"""Where a study is kept: opening its database, with heartbeats and retries of dead trials,
and storage URLs shown or quoted in errors with their passwords masked.

A storage is any database URL sqlalchemy reads: by default an SQLite file in the sweep's
folder, or a server (e.g. PostgreSQL) that workers on several machines share. A trial
whose heartbeat stops for GRACE_S seconds is failed and retried, up to MAX_RETRY times.
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.parse
import warnings

import optuna

from dncjax.sweeps import errors

HEARTBEAT_S = 20     # how often a running trial tells the storage it is alive
GRACE_S = 120        # a trial silent this long (on another host) is failed and retried
MAX_RETRY = 3        # retries of one trial before it stays failed

_QUERY_SECRET = re.compile(r"(?i)\b(password|passwd|pwd)=([^&\s]*)")


def _userinfo(url: str) -> tuple[str, str, str] | None:
  """(up to the user, the password, from the last `@` on) of `url`, or None: without a
  parser, so that a URL sqlalchemy cannot read (a bad port, an `@` in the password) is
  split as safely."""
  head, at, rest = url.rpartition("@")
  scheme, slashes, userinfo = head.partition("://")
  if not slashes:
    scheme, userinfo = "", head
  user, colon, password = userinfo.partition(":")
  if not at or not colon:
    return None
  return f"{scheme}{slashes}{user}", password, f"@{rest}"


def shown(url: str) -> str:
  """`url` with its password (and any password= in its query) masked."""
  parts = _userinfo(url)
  if parts is not None:
    url = f"{parts[0]}:***{parts[2]}"
  return _QUERY_SECRET.sub(r"\1=***", url)


def _scrubbed(text: str, url: str) -> str:
  """`text` (a storage error) with `url` shown masked and its password, however decoded
  or parsed, replaced by ***."""
  secrets = {m.group(2) for m in _QUERY_SECRET.finditer(url)}
  parts = _userinfo(url)
  if parts is not None:
    secrets.add(parts[1])
  with contextlib.suppress(Exception):
    import sqlalchemy  # pylint: disable=import-outside-toplevel
    secrets.add(sqlalchemy.engine.make_url(url).password or "")
  secrets |= {urllib.parse.unquote(s) for s in secrets}
  text = text.replace(url, shown(url))
  for secret in sorted(secrets - {"", "***"}, key=len, reverse=True):
    text = text.replace(secret, "***")
  return text


def error_line(e: BaseException, url: str) -> str:
  """`e` as one short line, naming its type, with the secrets of `url` masked."""
  text = _scrubbed(str(e), url).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
  """Queues a failed trial again with its parameters and reports (MAX_RETRY times)."""
  return optuna.storages.RetryHeartbeatStaleTrialCallback(
      max_retry=MAX_RETRY, inherit_intermediate_values=True)


def open_storage(url: str) -> optuna.storages.RDBStorage:
  """The storage at `url`; SweepError (its password masked) if it cannot be opened."""
  kwargs = ({"connect_args": {"timeout": 120}} if url.startswith("sqlite")
            else {"pool_pre_ping": True})
  for attempt in range(5):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            heartbeat_stale_trial_callback=retry_callback())
      except Exception as e:  # sqlalchemy / driver errors of many kinds
        # workers starting together on a new database race to create its tables: the
        # loser sees the winner's tables or rows, or its lock; it tries again
        racing = ("IntegrityError" in type(e).__name__
                  or any(w in str(e) for w in ("already exists", "locked")))
        if attempt < 4 and racing:
          time.sleep(0.5 + attempt)
          continue
        raise errors.SweepError(f"cannot open the study storage {shown(url)}: "
                                f"{error_line(e, url)}") from None
  raise AssertionError("unreachable")
