#!/usr/bin/python3
"""A warren worker in Python: type text.wordcount in pool text.

It follows docs/protocol.md (and nothing else): it declares the pool's
topology and the delay levels (quorum queues, with a queue for delayed
messages no pool queue is bound for; the classic levels of an older namespace
and their exit exchange are retired), declares the type in Redis, consumes the pool queue
and the dead-letter intake (draining into it the intake queue of an older namespace,
which had no delivery limit) with manual acknowledgements, records each attempt
with the protocol's Lua scripts (which also keep the pool's indexes of waiting
and running jobs), retries through the delay levels, parks a second copy of an
attempt that a live worker runs (it goes round the delay levels and is offered
again), dead-letters jobs that fail for good, keeps a worker lease (which says
what the pool is doing, for GET /v1/workers), records how far the pool's queue
has come, listens for cancel requests, stops and starts consuming when the
pool is paused and resumed, and holds back jobs over the type's rate limit
(section 18: a token from the type's bucket and the tenant's, else the message
is parked, no attempt counted).

Payload: {"text": string, "fail_times": integer (optional), "permanent": bool
(optional)}. Result: {"words": n, "lines": n, "chars": n}. fail_times makes
the first that many attempts fail with a retryable error, permanent makes the
job fail for good at once (both for tests).

Configuration (environment): WARREN_AMQP_URL, WARREN_REDIS_URL (or
WARREN_AMQP_URL_FILE, WARREN_REDIS_URL_FILE naming a file that holds the URL,
as for the Go processes; not both, and not an empty file); for a cluster
(section 17), WARREN_AMQP_URL may list its nodes separated by commas,
WARREN_AMQP_QUORUM_GROUP_SIZE sizes the quorum queues the worker creates,
WARREN_REDIS_SENTINEL_ADDRS and _MASTER (both or neither) find Redis through
Sentinel (WARREN_REDIS_SENTINEL_PASSWORD or _FILE: the Sentinels' own; not
with rediss://), and WARREN_REDIS_WAIT_REPLICAS and _WAIT_TIMEOUT (Go
duration, default 1s) make an outcome wait for replicas; for amqps:// and
rediss://, WARREN_AMQP_TLS_* and WARREN_REDIS_TLS_* (CA_FILE, CERT_FILE and
KEY_FILE, both or neither, SERVER_NAME; an error with a URL that is not
amqps:// or rediss://); WARREN_NAMESPACE (default warren),
WARREN_POOL_TEXT_CONCURRENCY (default 4), WARREN_POOL_TEXT_FAIRNESS (default 8, protocol
section 2.6), WARREN_SHUTDOWN_GRACE (Go duration
text, default 30s), WARREN_WORKER_ID (default <hostname>-<pid>-<8 random hex digits>: unique even for a container
restarted in place, which has the same host name and PID). Logs go to stderr. SIGTERM or SIGINT stops it
cleanly (exit 0).

Standard library, pika and redis only.
"""

import datetime
import json
import logging
import os
import queue as pyqueue
import random
import re
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

import pika
import pika.compat
import pika.exceptions
import redis
import redis.connection
import redis.sentinel

TYPE_NAME = "text.wordcount"
POOL = "text"
DELAY_LEVELS = 32
DELAY_UNIT_MS = 100
MAX_DELAY_MS = (2**32 - 1) * DELAY_UNIT_MS
UNROUTED_WAIT_MS = 60000  # how long an unroutable delayed message waits before it is offered again
DELIVERY_LIMIT = 20
LEASE_TTL_S = 10
VERSION = "wordcount.py 1"  # what the lease reports (GET /v1/workers)
REDECLARE_EVERY_S = 15
STORE_TIMEOUT_S = 5
RETENTION_MS = 604800000  # store.retention default: 7 days
LIMIT_CHECK_BACK_MS = 10000  # section 18: the shortest check-back of a job held back
GO_ZERO_TIME_MS = -62135596800000  # a limit's version without set_at, as Go reads it
MAX_TIMEOUT_MS = 86400000  # the longest timeout a job may have (24h): a record without one is kept that long while it runs

# The type's own policy; the job's body may override any field.
TYPE_TIMEOUT_MS = 30000
TYPE_BACKOFF = {"base_ms": 1000.0, "factor": 2.0, "max_ms": 60000.0}
DEFAULT_BACKOFF = {"base_ms": 1000.0, "factor": 2.0, "max_ms": 600000.0}

# The declaration, field for field in the order the Go worker writes it
# (section 2.5), so a Go and a Python worker of this type declare the same
# bytes and never flip the registry back and forth.
TYPE_DECL = {
    "name": TYPE_NAME,
    "pool": POOL,
    "schema": {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "fail_times": {"type": "integer", "minimum": 0},
            "permanent": {"type": "boolean"},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    "timeout": "30s",
    "max_timeout": "30s",
    "max_attempts": 3,
    "max_attempts_limit": 3,
    "backoff": {"base": "1s", "factor": 2, "max": "1m0s"},
    "description": "Counts the words, lines and characters of a text.",
}
TYPE_JSON = json.dumps(TYPE_DECL, separators=(",", ":"))

TERMINAL = ("succeeded", "failed", "canceled")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Section 2.5 and 6, copied from docs/protocol.md.
DECLARE_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'types ' .. ARGV[1])
return 1
"""

# Section 18: the token script of the types' rate limits, copied from
# docs/protocol.md.
TAKE_TOKEN_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'pool', 'limited_until', 'limited_by')
local st = r[1]
if st ~= 'queued' and st ~= 'scheduled' and st ~= 'retrying' then return {2} end
local made = tonumber(ARGV[1])
if made >= 0 and (tonumber(r[2]) or 0) ~= made then return {2} end
local version, least = tonumber(ARGV[10]), tonumber(ARGV[11])
local function checkback(w)
  if w <= least then return w end
  return math.max(least, math.ceil(w / 4))
end
local due = tonumber(r[4])
if due and due - now > 1000 and (tonumber(r[5]) or -1) >= version then
  return {0, checkback(due - now), due, 1}
end
local b = {}
for i = 0, 1 do
  local rate = tonumber(ARGV[3 + 2 * i])
  if rate > 0 then
    local key, cap = KEYS[2 + i], tonumber(ARGV[4 + 2 * i])
    local v = redis.call('HMGET', key, 'tokens', 'at', 'next', 'v')
    local tokens = tonumber(v[1]) or cap
    local at = tonumber(v[2]) or now
    local nxt = tonumber(v[3]) or 0
    local kv = tonumber(v[4]) or 0
    if kv < version then tokens, at, nxt, kv = cap, now, 0, version end
    if now > at then tokens = math.min(cap, tokens + (now - at) * rate) end
    b[#b + 1] = {key, rate, cap, tokens, nxt, kv}
  end
end
local short = false
for _, k in ipairs(b) do
  if k[4] < 1 then short = true end
end
if not short then
  for _, k in ipairs(b) do
    redis.call('HSET', k[1], 'tokens', tostring(k[4] - 1), 'at', now, 'next', tostring(k[5]), 'v', k[6])
    redis.call('PEXPIRE', k[1], math.ceil(math.max((k[3] - k[4] + 1) / k[2], k[5] - now)) + 1000)
  end
  redis.call('HDEL', KEYS[1], 'limited_until', 'limited_by')
  redis.call('ZREM', KEYS[4], ARGV[2])
  return {1}
end
local wait = 0
for _, k in ipairs(b) do
  if k[4] < 1 then
    local slot = math.max(now + math.ceil((1 - k[4]) / k[2]), k[5])
    redis.call('HSET', k[1], 'next', tostring(slot + 1 / k[2]), 'v', k[6])
    redis.call('PEXPIRE', k[1], math.ceil(slot - now + (k[3] + 1) / k[2]) + 1000)
    wait = math.max(wait, slot - now)
  end
end
wait = math.ceil(wait + tonumber(ARGV[7]) * math.min(wait / 10, 1000))
due = now + wait
redis.call('HSET', KEYS[1], 'limited_until', due, 'limited_by', ARGV[10])
redis.call('ZADD', KEYS[4], due, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 3600000)
if r[3] then redis.call('ZADD', ARGV[8] .. r[3], 'XX', due, ARGV[2]) end
if redis.call('PTTL', KEYS[1]) < wait + tonumber(ARGV[9]) then
  redis.call('PEXPIRE', KEYS[1], wait + tonumber(ARGV[9]))
end
return {0, checkback(wait), due, 0}
"""

TERMINAL_LUA = """
local function terminal(st)
  return st == 'succeeded' or st == 'failed' or st == 'canceled'
end
local function relist(prefix, pool, from, to, id, score)
  if not prefix or not pool then return end
  if from then redis.call('ZREM', prefix .. 's:' .. pool .. ':' .. from, id) end
  if to and score then redis.call('ZADD', prefix .. 's:' .. pool .. ':' .. to, score, id) end
end
local function attempt_entry(n, worker, started, ended, outcome, err)
  local e = '{"attempt":' .. (tonumber(n) or 0) .. ',"outcome":"' .. outcome .. '"'
  if worker then e = e .. ',"worker":' .. cjson.encode(worker) end
  if tonumber(started) then e = e .. ',"started_at":' .. tonumber(started) end
  if tonumber(ended) then e = e .. ',"ended_at":' .. tonumber(ended) end
  if err and err ~= '' then e = e .. ',"error":' .. err end
  return e .. '}'
end
local function add_attempt(attempts, entry)
  if not attempts or attempts == '' then return '[' .. entry .. ']' end
  return string.sub(attempts, 1, -2) .. ',' .. entry .. ']'
end
"""

START_LUA = TERMINAL_LUA + """
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'start_token', 'pool', 'worker', 'started_at', 'scheduled_at', 'created_at', 'timeout_ms', 'attempts')
local st = r[1]
if not st then return {'missing', 0} end
local attempt = tonumber(r[2]) or 0
if terminal(st) then return {st, attempt} end
if st == 'running' and r[3] == ARGV[4] then
  return {'running', attempt, tonumber(r[7] or r[8]) or 0}
end
local made = tonumber(ARGV[3])
if made >= 0 and attempt ~= made then
  if not (st == 'running' and attempt == made + 1) then
    return {'stale', attempt}
  end
  if ARGV[7] and r[5] then
    local left = redis.call('PTTL', ARGV[7] .. r[5])
    if left ~= -2 then
      local ran = tonumber(ARGV[2]) - (tonumber(r[6]) or tonumber(ARGV[2]))
      local wait = math.max(left + 1000, math.min(math.floor(ran / 10), 60000))
      redis.call('HSET', KEYS[1], 'parked_until', tonumber(ARGV[2]) + wait)
      if ARGV[9] and redis.call('PTTL', KEYS[1]) < wait + tonumber(ARGV[9]) then
        redis.call('PEXPIRE', KEYS[1], wait + tonumber(ARGV[9]))
      end
      return {'busy', attempt, wait}
    end
  end
end
attempt = attempt + 1
local set = {'attempt', attempt, 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2], 'start_token', ARGV[4]}
if st == 'running' then
  set[#set + 1] = 'attempts'
  set[#set + 1] = add_attempt(r[10], attempt_entry(attempt - 1, r[5], r[6], nil, 'lost', nil))
end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('HDEL', KEYS[1], 'progress', 'finished_at', 'parked_until', 'limited_until', 'limited_by')
relist(ARGV[11], r[4], st, 'running', ARGV[5], r[8])
if ARGV[9] then
  local timeout = tonumber(r[9]) or 0
  if timeout <= 0 then timeout = tonumber(ARGV[10]) end
  redis.call('PEXPIRE', KEYS[1], timeout + tonumber(ARGV[9]))
end
if r[4] then
  redis.call('ZREM', ARGV[6] .. r[4], ARGV[5])
  if ARGV[8] then redis.call('ZADD', ARGV[8] .. r[4], ARGV[2], ARGV[5]) end
end
return {'running', attempt, tonumber(r[7] or r[8]) or 0}
"""

FINISH_LUA = TERMINAL_LUA + """
local r = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'pool', 'error', 'progress', 'worker', 'started_at', 'created_at', 'attempts')
local st = r[1]
if not st then return {'missing', ''} end
if terminal(st) then return {'terminal', st} end
local of = tonumber(ARGV[9])
if of >= 0 and (tonumber(r[2]) or 0) ~= of then
  return {'superseded', st}
end
local set = {'status', ARGV[1]}
local function put(field, value) set[#set + 1] = field; set[#set + 1] = value end
if ARGV[4] ~= '' then put('result', ARGV[4]) end
if ARGV[5] ~= '' then
  put('error', ARGV[5])
elseif r[4] then
  redis.call('HDEL', KEYS[1], 'error')
end
if ARGV[8] ~= '' then put('scheduled_at', ARGV[8]) end
if ARGV[1] == 'queued' then put('attempt', ARGV[10]) end
if ARGV[1] == 'succeeded' and r[5] then put('progress', '{"percent":100}') end
if st == 'running' then
  local outcome = ARGV[1]
  if outcome == 'retrying' then outcome = 'failed' elseif outcome == 'queued' then outcome = 'interrupted' end
  put('attempts', add_attempt(r[9], attempt_entry(r[2], r[6], r[7], ARGV[2], outcome, ARGV[5])))
end
local ended = terminal(ARGV[1])
if ended then put('finished_at', ARGV[2]) end
redis.call('HSET', KEYS[1], unpack(set))
if ended then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[6], ARGV[1])
else
  local due = tonumber(ARGV[8]) or tonumber(ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.max(due - tonumber(ARGV[2]), 0) + tonumber(ARGV[3]))
end
local pool = r[3]
if pool and (ARGV[1] == 'retrying' or ARGV[1] == 'queued') then
  redis.call('ZADD', ARGV[11] .. pool, ARGV[8] ~= '' and ARGV[8] or ARGV[2], ARGV[7])
elseif pool and st ~= 'running' then
  redis.call('ZREM', ARGV[11] .. pool, ARGV[7])
end
if pool and st == 'running' and ARGV[12] then redis.call('ZREM', ARGV[12] .. pool, ARGV[7]) end
relist(ARGV[13], pool, st, ARGV[1], ARGV[7], r[8])
if ARGV[14] and pool and (ARGV[1] == 'succeeded' or ARGV[1] == 'failed') then
  local counts = ARGV[14] .. pool .. ':' .. math.floor(tonumber(ARGV[2]) / 60000)
  redis.call('HINCRBY', counts, ARGV[1], 1)
  redis.call('EXPIRE', counts, 7200)
end
return {'ok', ARGV[1]}
"""

log = logging.getLogger("wordcount")

# The job the current thread works on, as "job=… type=… pool=… worker=…":
# every log line of a job's work names them (JobContext adds them).
_job_ctx = threading.local()


class JobContext(logging.Filter):
    """Appends the current thread's job to each log line it writes."""

    def filter(self, record):
        fields = getattr(_job_ctx, "fields", None)
        if fields:
            record.msg = "%s [%s]" % (record.msg, fields.replace("%", "%%"))
        return True


log.addFilter(JobContext())


# ---------------------------------------------------------------- helpers

_GO_UNITS = {"ns": 1e-6, "us": 1e-3, "\u00b5s": 1e-3, "\u03bcs": 1e-3, "ms": 1.0,
             "s": 1e3, "m": 60e3, "h": 3600e3}
_GO_DUR_RE = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def go_duration_ms(v):
    """Reads Go duration text ("1m30s", "200ms") or a number of seconds."""
    if isinstance(v, bool):
        raise ValueError("duration: want text or a number")
    if isinstance(v, (int, float)):
        return float(v) * 1000.0
    s = str(v)
    sign = 1.0
    if s[:1] in "+-":
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _GO_DUR_RE.match(s, pos)
        if not m:
            raise ValueError("duration %r: want text such as \"30s\"" % v)
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError("empty duration")
    return sign * total


def now_ms():
    return int(time.time() * 1000)


def delay_units(delay_ms):
    return min((max(int(delay_ms), 0) + 50) // 100, 2**32 - 1)


def delay_routing_key(delay_ms, key):
    """Section 2.4: the bits of the delay, then the message's routing key
    (its type, after "!." in the high lane)."""
    return ".".join(format(delay_units(delay_ms), "032b")) + "." + key


HIGH_PRIORITY = 5  # section 2.6: priorities 5 to 9 go to the pool's high lane


def is_high(job):
    """Section 2.6: whether the job's priority puts it in the high lane."""
    p = job.get("priority") or 0
    return isinstance(p, int) and p >= HIGH_PRIORITY


def routing_key(job_type, high):
    """Section 2.6: the type, after "!." in the high lane."""
    return "!." + job_type if high else job_type


def delay_entry_level(delay_ms):
    """Section 2.4: a delayed message enters at the highest level whose bit
    is set (the levels above would only pass it down, at a cost)."""
    return max(delay_units(delay_ms).bit_length() - 1, 0)


def delay_bit_pattern(level, bit):
    """The binding of delay level n for bit n of the routing key being bit."""
    return "*." * (DELAY_LEVELS - 1 - level) + bit + ".#"


def delay_args(ttl_ms, next_exchange):
    """The arguments of a quorum queue whose every message waits ttl_ms and
    then dead-letters, at least once, to next_exchange (section 2.4)."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": pika.compat.long(ttl_ms),  # any integer width will do
        "x-dead-letter-exchange": next_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
    }


def parse_limit(raw):
    """Section 18: a rate limit's JSON as the API writes it, as
    ((rate per ms, capacity) or None, (tenant key, rate per ms, capacity) or
    None, version: set_at in Unix ms); None for no limit. Raises ValueError
    for one it cannot read."""
    if raw is None:
        return None
    v = json.loads(raw)

    def rate(r):
        limit, per_ms, burst = int(r["limit"]), go_duration_ms(r["per"]), int(r.get("burst") or 0)
        if limit < 1 or not per_ms or per_ms < 1000 or burst < 0:
            raise ValueError("rate out of bounds: %r" % (r,))
        return limit / per_ms, 1 + burst

    out = (rate(v["rate"]) if v.get("rate") else None,
           (str(v["tenant"]["key"]),) + rate(v["tenant"]) if v.get("tenant") else None)
    if out == (None, None):
        raise ValueError("a limit without rate or tenant")
    if not v.get("set_at"):
        return out + (GO_ZERO_TIME_MS,)
    set_at = datetime.datetime.fromisoformat(str(v["set_at"]).replace("Z", "+00:00"))
    if set_at.tzinfo is None:
        raise ValueError("set_at without a zone: %r" % (v["set_at"],))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return out + ((set_at - epoch) // datetime.timedelta(milliseconds=1),)


def decode_job(body):
    """Section 3: the job a readable message carries; raises, for any reason
    (bad UTF-8, nesting too deep, wrong types), when it is not readable."""
    job = json.loads(body.decode("utf-8"))
    if not isinstance(job, dict) or not isinstance(job.get("id"), str) \
            or not UUID_RE.match(job["id"]) or not isinstance(job.get("type"), str) or not job["type"]:
        raise ValueError("missing id or type")
    for name in ("max_attempts", "timeout_ms"):
        if name in job and (isinstance(job[name], bool) or not isinstance(job[name], int)):
            raise ValueError("%s is not an integer" % name)
    for name in ("backoff", "metadata"):
        if name in job and not isinstance(job[name], dict):
            raise ValueError("%s is not an object" % name)
    return job


def header_int(headers, name):
    """An integer header of any AMQP integer width, or None."""
    v = (headers or {}).get(name)
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return int(v)


class WorkError(Exception):
    """A failed attempt, with the code recorded on the job."""

    def __init__(self, code, message, permanent=False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.permanent = permanent


def wordcount(payload, attempt):
    """The handler: counts words (runs of non-space), lines (newlines, plus
    a last line without one) and characters (code points)."""
    text = payload.get("text")
    if not isinstance(text, str):
        raise WorkError("payload", "payload.text must be a string", permanent=True)
    if payload.get("permanent") is True:
        raise WorkError("permanent", "failing for good, as the payload asks", permanent=True)
    fail_times = payload.get("fail_times") or 0
    if isinstance(fail_times, int) and not isinstance(fail_times, bool) and attempt <= fail_times:
        raise WorkError("handler", "attempt %d fails on purpose (fail_times %d)" % (attempt, fail_times))
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    return {"words": len(text.split()), "lines": lines, "chars": len(text)}


# ---------------------------------------------------------------- config

def env_value(env, name):
    """The variable's value, or the contents of the file its _FILE variable
    names (a mounted secret), trailing line breaks trimmed, as the Go
    processes read WARREN_AMQP_URL and WARREN_REDIS_URL. Both set is an
    error, as it is ambiguous; so is an empty file. An empty variable counts
    as unset."""
    path = env.get(name + "_FILE")
    if not path:
        return env.get(name) or ""
    if env.get(name):
        raise ValueError("%s and %s_FILE are both set: set one" % (name, name))
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError("%s_FILE: %s" % (name, e)) from None
    if not value:
        raise ValueError("%s_FILE: %s is empty" % (name, path))
    return value


class TLS:
    """How a connection reaches its server over TLS, from the variables
    prefix + CA_FILE, CERT_FILE, KEY_FILE and SERVER_NAME, checked as the Go
    processes check amqp_tls and redis_tls. context is the connection's
    ssl.SSLContext (the CA file's CAs, else the system's; the client
    certificate, if any; TLS 1.2 or later; the server's name checked), or
    None when the URL does not use TLS. server_name is the name the server's
    certificate must bear; None means the URL's host."""

    def __init__(self, env, prefix, url_name, url, scheme):
        self.ca_file = env.get(prefix + "CA_FILE") or None
        cert_file = env.get(prefix + "CERT_FILE") or None
        key_file = env.get(prefix + "KEY_FILE") or None
        self.server_name = env.get(prefix + "SERVER_NAME") or None
        if (cert_file is None) != (key_file is None):
            raise ValueError("%sCERT_FILE and %sKEY_FILE: set both or neither" % (prefix, prefix))
        # The scheme alone: parsing the URL could put its password in an error.
        uses_tls = url.lower().startswith(scheme + "://")
        if not uses_tls:
            if self.ca_file or cert_file or self.server_name:
                raise ValueError("%s* is set, but %s is not %s://: the connection would not use TLS"
                                 % (prefix, url_name, scheme))
            self.context = None
            return
        try:
            self.context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise ValueError("%sCA_FILE %s: %s" % (prefix, self.ca_file, e)) from None
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert_file:
            try:
                self.context.load_cert_chain(cert_file, key_file)
            except OSError as e:
                raise ValueError("%sCERT_FILE %s and %sKEY_FILE %s: %s"
                                 % (prefix, cert_file, prefix, key_file, e)) from None


def redact(url):
    """The URL with its password hidden, as in warren's logs (xxxxx)."""
    u = urllib.parse.urlsplit(url)
    if u.password is None:
        return url
    user, _, host = u.netloc.rpartition("@")
    return urllib.parse.urlunsplit(u._replace(netloc=user.partition(":")[0] + ":xxxxx@" + host))


def amqp_nodes(value):
    """Section 17: the AMQP URLs of WARREN_AMQP_URL, one or several separated
    by commas (the nodes of one RabbitMQ cluster), checked as the Go
    processes check them (queue.ParseURLs): each must parse, and all share a
    scheme and a vhost. An error names a URL by its place and never shows a
    password: a URL that does not parse is not quoted at all, as it may be
    the piece of a password a stray comma cut off."""
    urls, first = [], None
    for i, raw in enumerate(value.split(","), 1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            u = urllib.parse.urlsplit(raw)
            if u.scheme.lower() not in ("amqp", "amqps"):
                raise ValueError("not amqp:// or amqps://")
            u.port  # noqa: B018 - raises ValueError for a port that is not a number
            pika.URLParameters(raw)
        except ValueError:
            hint = " (a comma separates the URLs of a cluster's nodes: write one in a password as %2C)" \
                if "," in value else ""
            raise ValueError("WARREN_AMQP_URL: URL %d is not a valid amqp:// or amqps:// URL%s; in a user name or "
                             "password, write : / ? # @ %% and spaces percent-encoded" % (i, hint)) from None
        # The vhost as Go reads it: the path after its first "/"; "/" for no path, or "/" alone.
        vhost = urllib.parse.unquote(u.path[1:]) if u.path.startswith("/") and u.path != "/" else "/"
        if first is None:
            first = (u.scheme.lower(), vhost)
        elif (u.scheme.lower(), vhost) != first:
            raise ValueError("WARREN_AMQP_URL: URL %d, %s: the nodes of one broker share a scheme and a vhost; "
                             "the first is %s:// with vhost %s" % (i, redact(raw), first[0], json.dumps(first[1])))
        urls.append(raw)
    if not urls:
        raise ValueError("WARREN_AMQP_URL: no AMQP URL given")
    return urls


def int_setting(env, name, default, least):
    try:
        v = int(env.get(name) or default)
    except ValueError:
        raise ValueError("%s: want a whole number" % name) from None
    if v < least:
        raise ValueError("%s must be at least %d" % (name, least))
    return v


def sentinel_addrs(value):
    """WARREN_REDIS_SENTINEL_ADDRS: host:port, separated by commas."""
    addrs = []
    for a in value.split(","):
        a = a.strip()
        host, _, port = a.rpartition(":")
        if not a:
            continue
        if not host or not port.isdigit():
            raise ValueError("WARREN_REDIS_SENTINEL_ADDRS: %s: want host:port, separated by commas" % json.dumps(a))
        addrs.append((host.strip("[]"), int(port)))
    return addrs


class Config:
    def __init__(self, env):
        self.amqp_url = env_value(env, "WARREN_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672/"
        self.amqp_urls = amqp_nodes(self.amqp_url)
        self.redis_url = env_value(env, "WARREN_REDIS_URL") or "redis://127.0.0.1:6379/0"
        # The nodes share a scheme: the first one's says whether TLS is used.
        self.amqp_tls = TLS(env, "WARREN_AMQP_TLS_", "WARREN_AMQP_URL", self.amqp_urls[0], "amqps")
        self.redis_tls = TLS(env, "WARREN_REDIS_TLS_", "WARREN_REDIS_URL", self.redis_url, "rediss")
        # Section 17: 0 is RabbitMQ's default, every node of the cluster.
        self.quorum_group_size = int_setting(env, "WARREN_AMQP_QUORUM_GROUP_SIZE", 0, 0)
        self.sentinel_addrs = sentinel_addrs(env.get("WARREN_REDIS_SENTINEL_ADDRS") or "")
        self.sentinel_master = env.get("WARREN_REDIS_SENTINEL_MASTER") or ""
        self.sentinel_password = env_value(env, "WARREN_REDIS_SENTINEL_PASSWORD") or None
        if bool(self.sentinel_addrs) != bool(self.sentinel_master):
            raise ValueError("redis.sentinel.addrs (WARREN_REDIS_SENTINEL_ADDRS) and redis.sentinel.master "
                             "(WARREN_REDIS_SENTINEL_MASTER) go together: set both to find Redis through Sentinel, "
                             "or neither for the Redis of redis_url")
        if self.sentinel_addrs and self.redis_tls.context is not None:
            # redis-py's Sentinel reaches the Sentinels with connections of
            # its own making, which cannot take this worker's SSLContext:
            # refused rather than half done (the Go processes can).
            raise ValueError("WARREN_REDIS_SENTINEL_ADDRS with a rediss:// WARREN_REDIS_URL: this worker cannot reach "
                             "Redis through Sentinel over TLS; use redis://, or a Go worker")
        # Section 17: how many replicas must acknowledge an outcome before
        # its message is acknowledged, and how long WAIT may take.
        self.wait_replicas = int_setting(env, "WARREN_REDIS_WAIT_REPLICAS", 0, 0)
        self.wait_timeout_ms = int(go_duration_ms(env.get("WARREN_REDIS_WAIT_TIMEOUT") or "1s"))
        if self.wait_timeout_ms <= 0:
            raise ValueError("WARREN_REDIS_WAIT_TIMEOUT must be positive")
        self.ns = env.get("WARREN_NAMESPACE") or "warren"
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$", self.ns):
            raise ValueError("WARREN_NAMESPACE %r: want letters, digits, '-' or '_'" % self.ns)
        self.concurrency = int(env.get("WARREN_POOL_TEXT_CONCURRENCY") or 4)
        if self.concurrency < 1:
            raise ValueError("WARREN_POOL_TEXT_CONCURRENCY must be at least 1")
        self.fairness = int(env.get("WARREN_POOL_TEXT_FAIRNESS") or 8)
        if self.fairness < 1:
            raise ValueError("WARREN_POOL_TEXT_FAIRNESS must be at least 1")
        self.grace_s = go_duration_ms(env.get("WARREN_SHUTDOWN_GRACE") or "30s") / 1000.0
        # The random part keeps the id unique where host and PID repeat (a
        # container restarted in place is PID 1 again): a worker that took a
        # dead predecessor's id would keep its lease, and its lost attempts,
        # alive (section 1).
        self.worker_id = env.get("WARREN_WORKER_ID") or "%s-%d-%s" % (
            socket.gethostname() or "worker", os.getpid(), os.urandom(4).hex())

    # Names (section 1).
    def exchange(self):
        return self.ns + ".jobs"

    def queue(self):
        return "%s.pool.%s" % (self.ns, POOL)

    def high_queue(self):
        # Section 2.6: the pool's high lane.
        return "%s.pool.%s.high" % (self.ns, POOL)

    def dead_exchange(self):
        return self.ns + ".dead"

    def dead_queue(self):
        return "%s.dead.%s" % (self.ns, POOL)

    def intake_queue(self):
        # Not named as before: the intake queue now has a delivery limit, and
        # a queue cannot change its arguments (section 2.2).
        return "%s.intake.%s" % (self.ns, POOL)

    def unlimited_intake_queue(self):
        # The intake queue of older namespaces, which had no delivery limit:
        # only drained and deleted (section 8).
        return "%s.dead-intake.%s" % (self.ns, POOL)

    def delay_exchange(self, n):
        return "%s.delay.%d" % (self.ns, n)

    def delay_queue(self, n):
        # A quorum queue, not named as its exchange: the classic queues of
        # older namespaces hold that name (section 2.4).
        return "%s.delay-q.%d" % (self.ns, n)

    def classic_delay_queue(self, n):
        return self.delay_exchange(n)

    def deliver_exchange(self):
        # The levels' exit; what it cannot route goes to unrouted().
        return self.ns + ".delay.due"

    def unrouted(self):
        # The fanout exchange and the quorum queue of the same name that keep
        # delayed messages no pool queue is bound for (section 2.4).
        return self.ns + ".delay.unrouted"

    def classic_deliver_exchange(self):
        # The exit of the classic levels of older namespaces: only retired.
        return self.ns + ".delay.deliver"

    def job_key(self, job_id):
        return "%s:job:%s" % (self.ns, job_id)

    def types_key(self):
        return self.ns + ":types"

    def events(self):
        return self.ns + ":events"

    def done_channel(self, job_id):
        # Section 10: the finish script announces the job's end there.
        return "%s:done:%s" % (self.ns, job_id)

    def waiting_prefix(self):
        # Section 12: the scripts add the record's pool to it.
        return self.ns + ":waiting:"

    def list_prefix(self):
        return self.ns + ":list:"

    def outcomes_prefix(self):
        return self.ns + ":outcomes:"

    def running_prefix(self):
        # The scripts add the record's pool to it: the pool's running jobs.
        return self.ns + ":running:"

    def worker_prefix(self):
        # Section 11: the start script adds the worker id of a running
        # attempt to it, to ask whether that worker still lives.
        return self.ns + ":worker:"

    def worker_key(self):
        return self.worker_prefix() + self.worker_id

    def workers_key(self):
        # Section 11: member = worker id, score = when its lease lapses
        # unless renewed (Unix ms).
        return self.ns + ":workers"

    def paused_key(self):
        # Section 15: field = pool; the pool's workers take no new jobs.
        return self.ns + ":paused"

    def started_key(self):
        # Member = pool, score = the latest due time (Unix ms) of a job a
        # worker of the pool started.
        return self.ns + ":started"

    def limits_key(self):
        # Section 18: field = job type, value = its rate limit as JSON.
        return self.ns + ":limits"

    def bucket_key(self, job_type, tenant=None):
        # Section 18: the type's token bucket, or one tenant's.
        if tenant is None:
            return "%s:bucket:%s" % (self.ns, job_type)
        return "%s:bucket:%s:tenant:%s" % (self.ns, job_type, tenant)

    def limited_key(self, job_type):
        # Section 18: member = job id, score = when it is offered again.
        return "%s:limited:%s" % (self.ns, job_type)


# ---------------------------------------------------------------- Redis

class NotReplicated(redis.exceptions.ConnectionError):
    """Fewer replicas than WARREN_REDIS_WAIT_REPLICAS acknowledged a write in
    time: as good as Redis being unavailable (section 17)."""


class Store:
    def __init__(self, cfg):
        self.cfg = cfg
        # A round trip may end with a WAIT of up to the wait timeout.
        read_s = max(STORE_TIMEOUT_S, cfg.wait_timeout_ms / 1000.0 + 2)
        timeouts = {"socket_timeout": read_s, "socket_connect_timeout": STORE_TIMEOUT_S}
        if cfg.sentinel_addrs:
            # Section 17: the Sentinels name the primary, asked again for
            # each new connection; the URL gives only user, password and
            # database.
            url = redis.connection.parse_url(cfg.redis_url)
            sentinels = redis.sentinel.Sentinel(cfg.sentinel_addrs, sentinel_kwargs=dict(
                timeouts, password=cfg.sentinel_password))
            self.rdb = sentinels.master_for(cfg.sentinel_master, connection_class=SentinelConnection,
                                            username=url.get("username"), password=url.get("password"),
                                            db=url.get("db", 0), **timeouts)
        elif cfg.redis_tls.context is not None:
            self.rdb = redis.Redis.from_url(cfg.redis_url, connection_class=TLSConnection,
                                            tls_context=cfg.redis_tls.context,
                                            tls_server_name=cfg.redis_tls.server_name, **timeouts)
        else:
            self.rdb = redis.Redis.from_url(cfg.redis_url, connection_class=PlainConnection, **timeouts)
        self._declare = self.rdb.register_script(DECLARE_LUA)
        self._start = self.rdb.register_script(START_LUA)
        self._finish = self.rdb.register_script(FINISH_LUA)
        self._take_token = self.rdb.register_script(TAKE_TOKEN_LUA)

    def declare(self):
        return self._declare(keys=[self.cfg.types_key()], args=[TYPE_NAME, TYPE_JSON, self.cfg.events()])

    def start(self, job_id, made, token):
        """Returns (status, attempt, n): n is, for "running", when the job was
        due (Unix ms, 0 if the record does not say); for "busy", how many
        milliseconds to wait before offering the copy again; else 0."""
        reply = self._start(keys=[self.cfg.job_key(job_id)],
                            args=[self.cfg.worker_id, now_ms(), made, token, job_id,
                                  self.cfg.waiting_prefix(), self.cfg.worker_prefix(), self.cfg.running_prefix(),
                                  RETENTION_MS, MAX_TIMEOUT_MS, self.cfg.list_prefix()])
        n = int(reply[2]) if len(reply) > 2 else 0
        return reply[0].decode(), int(reply[1]), n

    def finish(self, job_id, status, attempt, result="", error=None, next_ms="", restore=0):
        err = json.dumps(error, separators=(",", ":")) if error else ""
        st, _ = self.replicated(self._finish, [self.cfg.job_key(job_id)],
                                [status, now_ms(), RETENTION_MS, result, err,
                                 self.cfg.done_channel(job_id), job_id, next_ms, attempt, restore,
                                 self.cfg.waiting_prefix(), self.cfg.running_prefix(),
                                 self.cfg.list_prefix(), self.cfg.outcomes_prefix()])
        return st.decode()

    def replicated(self, script, keys, args):
        """Runs script and, with WARREN_REDIS_WAIT_REPLICAS n set, ends its
        round trip with WAIT n timeout (section 17): one pipeline, not a
        transaction, so that WAIT runs on the connection that made the
        writes (it covers that connection's writes alone). Fewer
        acknowledgements raise NotReplicated, and the caller holds the job
        and runs the script again. A Redis without the script (restarted,
        or a promoted replica) gets EVAL, with the WAIT."""
        n = self.cfg.wait_replicas
        if n <= 0:
            return script(keys=keys, args=args)
        for evalsha in (True, False):
            p = self.rdb.pipeline(transaction=False)
            if evalsha:
                p.evalsha(script.sha, len(keys), *keys, *args)
            else:
                p.eval(script.script, len(keys), *keys, *args)
            p.execute_command("WAIT", n, self.cfg.wait_timeout_ms)
            reply, acked = p.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError) and evalsha:
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acked, Exception):
                raise acked
            if acked < n:
                raise NotReplicated("%d of %d replicas acknowledged within %s" % (acked, n, go_text(self.cfg.wait_timeout_ms)))
            return reply

    def take_token(self, job, made, lim):
        """Section 18: takes a token for job from the buckets of its type's
        limit lim (parse_limit's). Returns None when it may start (or when
        the start script is to decide: no record, ended, a stale copy), else
        how many milliseconds it is to wait."""
        rate, tenant, version = lim
        type_rate, type_cap = rate if rate else (0, 0)
        tenant_rate, tenant_cap, value = 0, 0, ""
        if tenant:
            key, tenant_rate, tenant_cap = tenant
            meta = job.get("metadata")
            value = meta.get(key, "") if isinstance(meta, dict) else ""
            if not isinstance(value, str):
                value = ""
        reply = self._take_token(keys=[self.cfg.job_key(job["id"]), self.cfg.bucket_key(job["type"]),
                                       self.cfg.bucket_key(job["type"], value), self.cfg.limited_key(job["type"])],
                                 args=[made, job["id"], repr(float(type_rate)), type_cap,
                                       repr(float(tenant_rate)), tenant_cap, repr(random.random()),
                                       self.cfg.waiting_prefix(), RETENTION_MS, version, LIMIT_CHECK_BACK_MS])
        if len(reply) == 4 and int(reply[0]) == 0:
            return int(reply[1])
        return None

    def lease(self, record):
        """Section 11: renews the lease, holding record (the worker and its
        pool's load), lists the worker as live, and reads the paused pools
        and the type's rate limit (section 18), in one round trip. Returns
        whether POOL is paused, and the limit as JSON text (None: none)."""
        now = now_ms()
        record = dict(record, seen_ms=now)
        p = self.rdb.pipeline(transaction=False)
        p.set(self.cfg.worker_key(), json.dumps(record, separators=(",", ":")), ex=LEASE_TTL_S)
        p.zadd(self.cfg.workers_key(), {self.cfg.worker_id: now + LEASE_TTL_S * 1000})
        p.zremrangebyscore(self.cfg.workers_key(), "-inf", "(%d" % now)
        p.hexists(self.cfg.paused_key(), POOL)
        p.hget(self.cfg.limits_key(), TYPE_NAME)
        r = p.execute()
        return bool(r[3]), r[4]

    def release(self):
        p = self.rdb.pipeline(transaction=False)
        p.delete(self.cfg.worker_key())
        p.zrem(self.cfg.workers_key(), self.cfg.worker_id)
        p.execute()

    def mark_started(self, due):
        """Records how far each lane of the pool's queue has come: the latest
        due time of a job this worker started (an earlier one changes
        nothing). The member is the pool for the normal lane and the pool
        and ".high" for the high lane (section 14)."""
        self.rdb.zadd(self.cfg.started_key(), {(POOL + ".high" if high else POOL): ms for high, ms in due.items()}, gt=True)


# Section 17: replies with which Redis says it cannot take the command now,
# though it may soon (a replica being promoted, a demoted primary, a primary
# short of replicas, a server loading its data, a script running too long).
TRANSIENT_REPLIES = ("READONLY", "NOREPLICAS", "LOADING", "MASTERDOWN", "TRYAGAIN", "BUSY")


class Transient:
    """Turns a transient reply into a connection error, and drops the
    connection, so that it counts as an outage (the job is held, the command
    sent again) and the next connection goes where the Sentinels now say
    the primary is. redis-py strips the code of the replies it knows
    (READONLY, LOADING) from their message, so those go by class."""

    def read_response(self, *args, **kwargs):
        try:
            return super().read_response(*args, **kwargs)
        except redis.exceptions.ResponseError as e:
            if not isinstance(e, redis.exceptions.ReadOnlyError) and \
                    not str(e).startswith(TRANSIENT_REPLIES):
                raise
            self.disconnect()
            raise redis.exceptions.ConnectionError("Redis cannot take the command now: %s" % e) from e


class PlainConnection(Transient, redis.connection.Connection):
    """A redis:// connection."""


class SentinelConnection(Transient, redis.sentinel.SentinelManagedConnection):
    """A connection to the primary the Sentinels name."""


class TLSConnection(Transient, redis.connection.Connection):
    """A rediss:// connection with the worker's own ssl.SSLContext and server
    name. redis-py's SSLConnection takes files rather than a context, checks
    no host name unless asked (4.x) and always expects the URL's host, so a
    server name (WARREN_REDIS_TLS_SERVER_NAME) could not be given."""

    def __init__(self, tls_context=None, tls_server_name=None, **kwargs):
        super().__init__(**kwargs)
        self.tls_context = tls_context
        self.tls_server_name = tls_server_name

    def _connect(self):
        # Connection._connect opens the TCP socket, as SSLConnection's does.
        sock = super()._connect()
        return self.tls_context.wrap_socket(sock, server_hostname=self.tls_server_name or self.host)


# ---------------------------------------------------------------- AMQP

class Lanes:
    """The deliveries in hand, for the takers (section 2.6): a taker takes
    the intake's and the high lane's first, except that after fairness
    high starts in a row it takes a normal one if one waits, so the normal
    lane does not starve. put(None) wakes one taker to stop.

    The broker sends the high lane's next message only once an ack frees a
    place in its prefetch, so a taker done with a high job may find the
    lane empty in the moment before the refill: while the lane's prefetch
    was used up at its last delivery (full), a taker waits up to
    REFILL_WAIT_S for it before it takes a normal one."""

    REFILL_WAIT_S = 0.05

    def __init__(self, fairness, prefetch):
        self.fairness, self.prefetch = fairness, prefetch
        self.cond = threading.Condition()
        self.other, self.high, self.normal = [], [], []
        self.streak = 0  # high starts since the last normal one
        self.high_out = 0  # high deliveries not settled yet
        self.full = False

    def put(self, d):
        with self.cond:
            if d is None or d.intake:
                self.other.append(d)
            elif d.high:
                d.lanes = self
                self.high_out += 1
                self.full = self.high_out >= self.prefetch
                self.high.append(d)
            else:
                self.normal.append(d)
            self.cond.notify_all()

    def settled_high(self):
        with self.cond:
            self.high_out = max(self.high_out - 1, 0)

    def _pop(self):
        if self.other:
            return True, self.other.pop(0)
        order = (self.normal, self.high) if self.streak >= self.fairness else (self.high, self.normal)
        for lane in order:
            if lane:
                self.streak = self.streak + 1 if lane is self.high else 0
                return True, lane.pop(0)
        return False, None

    def get(self):
        with self.cond:
            while True:
                if not self.other and not self.high and self.full and self.streak < self.fairness:
                    # The high lane may be about to be refilled.
                    self.cond.wait_for(lambda: self.high or self.other, timeout=self.REFILL_WAIT_S)
                    if not self.high:
                        self.full = False  # nothing came: the queue is empty
                ok, d = self._pop()
                if ok:
                    return d
                self.cond.wait()

    def get_nowait(self):
        with self.cond:
            ok, d = self._pop()
            if not ok:
                raise pyqueue.Empty
            return d


class Delivery:
    """One message, with the channel it came on (acks go back there)."""

    def __init__(self, session, ch, tag, props, body, intake, high=False):
        self.session, self.ch, self.tag = session, ch, tag
        self.props, self.body, self.intake, self.high = props, body, intake, high

    def live(self):
        return self.session.alive and self.ch.is_open

    def ack(self):
        self._settle(lambda: self.ch.basic_ack(self.tag))

    def requeue(self):
        self._settle(lambda: self.ch.basic_nack(self.tag, requeue=True))

    def drop(self):
        self._settle(lambda: self.ch.basic_nack(self.tag, requeue=False))

    def forget(self):
        """Takes the delivery out of its lane's count of unsettled ones (it
        is settled, or its channel is gone)."""
        lanes = getattr(self, "lanes", None)
        if lanes is not None:
            self.lanes = None
            lanes.settled_high()

    def _settle(self, fn):
        # A failed ack needs nothing: the broker redelivers the message and
        # the start script finds the job terminal (or the copy stale).
        self.forget()
        try:
            if self.live():
                self.session.call(fn)
        except Exception as e:  # noqa: BLE001 - logged, then left to redelivery
            log.warning("cannot settle message: %s", e)


class Nodes:
    """Section 17: the nodes of the broker, in the order of the next
    connection's tries: a fresh random order each time, so that the workers
    of a deployment spread over a cluster's nodes, but with the node whose
    connection was lost last tried last, as it is the most likely to be down
    still. Used by the connection's thread alone."""

    def __init__(self, urls):
        self.urls = urls
        self.lost = None  # the URL of the last connection lost

    def order(self):
        urls = random.sample(self.urls, len(self.urls))
        if self.lost in urls and len(urls) > 1:
            urls.remove(self.lost)
            urls.append(self.lost)
        return urls


class Session:
    """One AMQP connection, to the first of urls that answers: every AMQP
    call runs on the thread that made it (pika's rule); other threads go
    through call()."""

    def __init__(self, cfg, on_message, urls):
        self.cfg = cfg
        self.thread = threading.current_thread()
        self.conn = self.url = None
        failed = []
        for url in urls:
            try:
                self.conn = pika.BlockingConnection(self.parameters(url))
                self.url = url
                break
            except (pika.exceptions.AMQPError, OSError) as e:
                failed.append("%s: %r" % (redact(url), e))
        if self.conn is None:
            raise pika.exceptions.AMQPConnectionError("no node answers: " + "; ".join(failed))
        if failed:
            log.warning("connected to %s; not to %s", redact(self.url), "; ".join(failed))
        elif len(urls) > 1:
            log.info("connected to %s", redact(self.url))
        self.alive = True
        self.pub = None
        self.channels = []
        self.tags = []  # the intake's consumer
        # The pool's consumers, one per lane (section 2.6): (channel,
        # callback, queue) each, and their tags, [] while paused.
        self.pool_lanes = []
        self.pool_tags = []
        self._on_message = on_message

    def parameters(self, url):
        params = pika.URLParameters(url)
        if self.cfg.amqp_tls.context is not None:
            params.ssl_options = pika.SSLOptions(self.cfg.amqp_tls.context,
                                                 self.cfg.amqp_tls.server_name or params.host)
        params.client_properties = {"connection_name": "wordcount-" + self.cfg.worker_id}
        params.heartbeat = 10
        params.blocked_connection_timeout = 30
        params.socket_timeout = 5
        return params

    def declare_quorum(self, ch, name, arguments):
        """Declares the quorum queue name with arguments, and with
        x-quorum-initial-group-size when WARREN_AMQP_QUORUM_GROUP_SIZE is set
        (section 17). A queue that exists with another size (or none)
        refuses a declaration naming a different one, with 406 naming the
        argument, and the refusal closes the channel it came on; so the
        declaration goes on a channel of its own, and such a queue, whose
        size no declaration can change, is taken as it is with a passive
        declaration on ch."""
        if self.cfg.quorum_group_size > 0:
            arguments = dict(arguments, **{"x-quorum-initial-group-size": pika.compat.long(self.cfg.quorum_group_size)})
        own = self.conn.channel()
        try:
            own.queue_declare(name, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 406 or "x-quorum-initial-group-size" not in e.reply_text:
                raise
            ch.queue_declare(name, durable=True, passive=True)
        finally:
            if own.is_open:
                own.close()

    def declare_delays(self):
        """Section 2.4: the delay levels, exactly as the Go processes declare
        them; retries and parked copies go through them and the pool binds to
        their exit. Each level's queue is a quorum queue that dead-letters at
        least once, so no hand-over between levels can lose a message."""
        ch = self.conn.channel()
        below, unrouted = self.cfg.deliver_exchange(), self.cfg.unrouted()
        # What the exit cannot route (no pool queue is bound for its type)
        # waits a minute in the unrouted queue and is offered again, rather
        # than staying with its level, where a few dozen would stop the level.
        ch.exchange_declare(unrouted, exchange_type="fanout", durable=True)
        ch.exchange_declare(below, exchange_type="topic", durable=True,
                            arguments={"alternate-exchange": unrouted})
        self.declare_quorum(ch, unrouted, delay_args(UNROUTED_WAIT_MS, below))
        ch.queue_bind(unrouted, unrouted, routing_key="")
        for n in range(DELAY_LEVELS):
            name, q = self.cfg.delay_exchange(n), self.cfg.delay_queue(n)
            ch.exchange_declare(name, exchange_type="topic", durable=True)
            self.declare_quorum(ch, q, delay_args(DELAY_UNIT_MS << n, below))
            ch.queue_bind(q, name, routing_key=delay_bit_pattern(n, "1"))
            ch.exchange_bind(destination=below, source=name, routing_key=delay_bit_pattern(n, "0"))
            below = name
        self.retire_classic_delays(ch)

    def retire_classic_delays(self, ch):
        """Section 2.4: the classic delay queues of a namespace made before
        the levels were quorum queues (named as their exchanges) drain into
        the quorum levels. An empty one (or none) is deleted; one that still
        holds messages refuses (406, which closes the channel) and is unbound
        instead, so nothing new enters it and its messages dead-letter, when
        their time is up, to the next level down as they always did; a later
        start deletes it. Then the classic exit exchange is retired. Closes ch
        (or the channel that replaced it)."""
        kept = False  # a classic level still holds messages
        try:
            for n in range(DELAY_LEVELS):
                q = self.cfg.classic_delay_queue(n)
                try:
                    ch.queue_delete(q, if_empty=True)
                    continue
                except pika.exceptions.ChannelClosedByBroker as e:
                    if e.reply_code != 406:
                        raise
                ch = self.conn.channel()
                ch.queue_unbind(q, self.cfg.delay_exchange(n), routing_key=delay_bit_pattern(n, "1"))
                log.info("classic delay queue %s still holds messages: unbound, it drains into the quorum "
                         "delay levels and is deleted once empty", q)
                kept = True
        finally:
            if ch.is_open:
                ch.close()
        self.retire_classic_deliver(kept)

    def retire_classic_deliver(self, kept):
        """Section 2.4: the classic levels' exit exchange is taken out of the
        path of delayed messages (level 0's exchange no longer passes them on
        to it) and, once no classic level is left to drain through it,
        deleted. Asking whether it exists costs a channel when it does not."""
        old = self.cfg.classic_deliver_exchange()
        ch = self.conn.channel()
        try:
            try:
                ch.exchange_declare(old, passive=True)
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code == 404:
                    return
                raise
            ch.exchange_unbind(destination=old, source=self.cfg.delay_exchange(0),
                               routing_key=delay_bit_pattern(0, "0"))
            if not kept:
                ch.exchange_delete(old)
        finally:
            if ch.is_open:
                ch.close()

    def declare_pool(self, ch):
        """Section 2, steps 1 to 4."""
        c = self.cfg
        ch.exchange_declare(c.exchange(), exchange_type="direct", durable=True)
        ch.exchange_declare(c.dead_exchange(), exchange_type="topic", durable=True)
        quorum = {"x-queue-type": "quorum"}
        self.declare_quorum(ch, c.dead_queue(), quorum)
        ch.queue_bind(c.dead_queue(), c.dead_exchange(), routing_key="*." + POOL)
        self.declare_quorum(ch, c.intake_queue(), {
            "x-queue-type": "quorum",
            "x-delivery-limit": pika.compat.long(DELIVERY_LIMIT),
            "x-dead-letter-exchange": c.dead_exchange(),
            "x-dead-letter-routing-key": "intake." + POOL,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        })
        ch.queue_bind(c.intake_queue(), c.dead_exchange(), routing_key="limit." + POOL)
        # Both lanes (section 2.6), with the same arguments.
        for q, high in ((c.queue(), False), (c.high_queue(), True)):
            self.declare_quorum(ch, q, {
                "x-queue-type": "quorum",
                "x-delivery-limit": pika.compat.long(DELIVERY_LIMIT),
                "x-dead-letter-exchange": c.dead_exchange(),
                "x-dead-letter-routing-key": "limit." + POOL,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            })
            key = routing_key(TYPE_NAME, high)
            ch.queue_bind(q, c.exchange(), routing_key=key)
            ch.queue_bind(q, c.deliver_exchange(), routing_key="*." * DELAY_LEVELS + key)

    def retire_unlimited_intake(self):
        """Section 8: the intake queue of a namespace made before intake
        queues had a delivery limit is unbound, so nothing new enters it, and
        its ready messages are moved to the current intake queue, each
        published (mandatory, confirmed) before it is acknowledged; once it
        holds nothing and has no consumer (a worker of the old version) it is
        deleted, now or on a later start. Quorum queues refuse queue.delete
        with if-empty (540, which closes the connection), so the counts of a
        passive declaration stand in for it. A queue that does not exist, or
        that another worker deletes meanwhile, answers 404: nothing to do."""
        c = self.cfg
        old = c.unlimited_intake_queue()
        ch = self.conn.channel()
        moved = 0
        try:
            ch.queue_declare(old, passive=True)
            ch.queue_unbind(old, c.dead_exchange(), routing_key="limit." + POOL)
            ch.confirm_delivery()
            while True:
                method, props, body = ch.basic_get(old, auto_ack=False)
                if method is None:
                    break
                headers = dict(props.headers or {})
                headers.pop("x-delivery-count", None)  # the new queue counts afresh
                props.headers = headers
                props.delivery_mode = 2
                props.user_id = None  # the broker checks it against this connection's user
                # Raises when the broker returns or refuses it: the message
                # then goes back to the old queue when the channel closes.
                ch.basic_publish("", c.intake_queue(), body, props, mandatory=True)
                ch.basic_ack(method.delivery_tag)
                moved += 1
            if moved:
                log.info("moved %d messages of intake queue %s, which has no delivery limit, to %s",
                         moved, old, c.intake_queue())
            q = ch.queue_declare(old, passive=True).method
            if q.message_count == 0 and q.consumer_count == 0:
                ch.queue_delete(old)
            else:
                log.info("intake queue %s is still in use (%d messages, %d consumers): unbound, it is "
                         "deleted on a later start once empty and unused", old, q.message_count, q.consumer_count)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                raise
        finally:
            if ch.is_open:
                ch.close()

    def setup(self, prefetch, paused):
        """Declares everything and consumes the intake queue, and the pool's
        queues (both lanes, each on a channel of its own with the prefetch)
        unless the pool is paused (section 15)."""
        self.declare_delays()
        for queue_name, n, intake in ((self.cfg.high_queue(), prefetch, False), (self.cfg.queue(), prefetch, False),
                                      (self.cfg.intake_queue(), 1, True)):
            ch = self.conn.channel()
            self.declare_pool(ch)
            if intake:
                try:
                    self.retire_unlimited_intake()
                except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.UnroutableError,
                        pika.exceptions.NackError) as e:
                    # Best effort: a later start retires what is left, and
                    # the new intake queue is consumed meanwhile.
                    log.warning("cannot retire intake queue %s: %s", self.cfg.unlimited_intake_queue(), e)
            ch.basic_qos(prefetch_count=n, global_qos=False)

            high = queue_name == self.cfg.high_queue()

            def cb(ch, method, props, body, intake=intake, high=high):
                self._on_message(Delivery(self, ch, method.delivery_tag, props, body, intake, high))

            self.channels.append(ch)
            if intake:
                self.tags.append((ch, ch.basic_consume(queue_name, cb, auto_ack=False)))
            else:
                self.pool_lanes.append((ch, cb, queue_name))
        if not paused:
            self.consume_pool()

    def consume_pool(self):
        """Starts the pool's consumers, high lane first (at setup, and on a
        resume)."""
        self.pool_tags = [(ch, ch.basic_consume(q, cb, auto_ack=False)) for ch, cb, q in self.pool_lanes]

    def paused(self):
        return not self.pool_tags

    def cancel_pool(self):
        """Cancels the pool's consumers (a pause). pika requeues, once each,
        the deliveries it received and did not hand to the callback; the
        channels stay open for the acks of the jobs that run on."""
        for ch, tag in self.pool_tags:
            if ch.is_open:
                ch.basic_cancel(tag)
        self.pool_tags = []

    def publish(self, exchange, key, body, props):
        """Publishes mandatory on a confirm channel and waits for the confirm;
        raises when the broker returns or refuses the message."""
        if self.pub is None or not self.pub.is_open:
            self.pub = self.conn.channel()
            self.pub.confirm_delivery()
        self.pub.basic_publish(exchange, key, body, props, mandatory=True)

    def call(self, fn, timeout=STORE_TIMEOUT_S):
        """Runs fn on the connection's thread and returns its result."""
        if threading.current_thread() is self.thread:
            return fn()
        done = threading.Event()
        out = {}

        def run():
            try:
                out["v"] = fn()
            except Exception as e:  # noqa: BLE001 - handed back to the caller
                out["e"] = e
            done.set()

        self.conn.add_callback_threadsafe(run)
        if not done.wait(timeout):
            raise TimeoutError("the AMQP connection did not answer in %ss" % timeout)
        if "e" in out:
            raise out["e"]
        return out.get("v")

    def cancel_consumers(self):
        tags = self.tags + self.pool_tags
        for ch, tag in tags:
            try:
                if ch.is_open:
                    ch.basic_cancel(tag)
            except Exception as e:  # noqa: BLE001
                log.warning("cannot cancel consumer: %s", e)
        self.tags, self.pool_tags = [], []

    def close(self):
        self.alive = False
        try:
            if self.conn.is_open:
                self.conn.close()
        except Exception:  # noqa: BLE001 - closing anyway
            pass


# ---------------------------------------------------------------- worker

class Worker:
    def __init__(self, cfg):
        self.cfg = cfg
        self.store = Store(cfg)
        self.nodes = Nodes(cfg.amqp_urls)
        self.local = Lanes(cfg.fairness, cfg.concurrency)
        self.stop_taking = threading.Event()  # phase 1 of shutdown
        self.stop_jobs = threading.Event()  # phase 2
        self.ready = threading.Event()  # types declared on the live connection
        self.session = None
        self.running = {}  # job id -> cancel Event
        self.due_mark = {}  # lane (high?) -> latest due time (Unix ms) of a job started since the lease thread took it
        self.running_mu = threading.Lock()
        # What the lease reports (section 11): deliveries in hand, attempts
        # ended in success and with an error, since the process started.
        self.started_ms = now_ms()
        self.busy = self.done = self.failed = 0
        # Pausing (section 15). want_paused is what Redis says, from the
        # events channel and each lease renewal; heard counts the events,
        # so a renewal whose reply may predate one is not applied.
        # pause_known is set once a renewal was applied: the pool is not
        # consumed before. held is set while the pool's consumer is
        # cancelled: what takers still find of the pool's deliveries goes
        # back to the queue.
        self.want_paused = False
        self.heard = 0
        self.pause_known = threading.Event()
        self.held = threading.Event()
        self.wake = threading.Event()  # renew the lease now
        # The type's rate limit (section 18), as parse_limit gives it, read
        # with each lease renewal and at once when one is announced; None
        # for none. Read before the pool is consumed (pause_known).
        self.limit = None
        self.limit_raw = None

    # --- holding (section 7)
    def hold(self, d, what, fn):
        """Runs fn until it succeeds, backing off; in phase 2 of shutdown
        requeues the message and returns (False, None)."""
        delay = 0.1
        while True:
            try:
                return True, fn()
            except Exception as e:  # noqa: BLE001 - Redis or broker away
                log.warning("cannot %s; holding the job and trying again in %.1fs: %s", what, delay, e)
            if self.stop_jobs.wait(delay) or not d.live():
                d.requeue()
                return False, None
            delay = min(delay * 2, 5.0)

    # --- publishing
    def publish(self, d, exchange, key, headers):
        p = d.props
        props = pika.BasicProperties(
            delivery_mode=2, content_type="application/json", message_id=p.message_id,
            type=p.type, timestamp=p.timestamp, headers=headers)
        return self.hold(d, "publish to %s" % exchange,
                         lambda: d.session.call(lambda: d.session.publish(exchange, key, d.body, props)))

    def headers(self, d, job, attempt):
        h = d.props.headers or {}
        timeout_ms = header_int(h, "x-warren-timeout-ms")
        if timeout_ms is None:
            timeout_ms = int(job.get("timeout_ms") or 0)
        out = {
            "x-warren-attempts": int(attempt),
            "x-warren-max-attempts": int(job.get("max_attempts") or 0),
            "x-warren-timeout-ms": pika.compat.long(timeout_ms),
        }
        if isinstance(h.get("traceparent"), (str, bytes)):
            tp = h["traceparent"]
            out["traceparent"] = tp.decode() if isinstance(tp, bytes) else tp
        return out

    def settle(self, d, job_id, status, attempt, result="", error=None, next_ms="", restore=0):
        ok, st = self.hold(d, "record the outcome",
                           lambda: self.store.finish(job_id, status, attempt, result, error, next_ms, restore))
        if not ok:
            return
        if st not in ("ok", "missing", "terminal", "superseded"):
            log.warning("unexpected reply from the finish script: %s", st)
        if not d.intake and status in ("succeeded", "failed", "retrying"):
            with self.running_mu:
                if status == "succeeded":
                    self.done += 1
                else:
                    self.failed += 1
        if status == "queued":
            d.requeue()
        else:
            d.ack()

    def fail(self, d, job, attempt, code, message):
        """Section 7.4: dead letter, then record failed, then ack."""
        log.warning("job %s failed: attempt=%d code=%s err=%s", job["id"], attempt, code, message)
        h = self.headers(d, job, attempt)
        h["x-warren-error-code"] = code
        h["x-warren-error"] = message
        h["x-warren-failed-at"] = str(now_ms())
        ok, _ = self.publish(d, self.cfg.dead_exchange(), "failed." + POOL, h)
        if ok:
            self.settle(d, job["id"], "failed", attempt,
                        error={"code": code, "message": message, "retryable": False})

    def retry(self, d, job, attempt, code, message):
        """Section 7.3: publish the delayed retry, record retrying, ack."""
        policy = dict(TYPE_BACKOFF)
        try:
            own = job.get("backoff") or {}
            for field, key in (("base", "base_ms"), ("max", "max_ms")):
                if own.get(field):
                    policy[key] = go_duration_ms(own[field]) or policy[key]
            if own.get("factor"):
                policy["factor"] = float(own["factor"])
        except (ValueError, TypeError, AttributeError) as e:
            log.warning("job %s: unreadable backoff %r; using the type's: %s", job["id"], job.get("backoff"), e)
        for k, v in DEFAULT_BACKOFF.items():
            policy[k] = policy.get(k) or v
        dd = min(policy["base_ms"] * policy["factor"] ** (max(attempt, 1) - 1), policy["max_ms"])
        wait_ms = min(dd / 2 + dd / 2 * random.random(), MAX_DELAY_MS)
        log.info("job %s attempt %d failed; retrying in %.0fms: code=%s err=%s",
                 job["id"], attempt, wait_ms, code, message)
        key = routing_key(job["type"], is_high(job))  # section 2.6: the retry keeps its lane
        if wait_ms < DELAY_UNIT_MS:
            exchange = self.cfg.exchange()
        else:
            exchange, key = self.cfg.delay_exchange(delay_entry_level(wait_ms)), delay_routing_key(wait_ms, key)
        ok, _ = self.publish(d, exchange, key, self.headers(d, job, attempt))
        if ok:
            self.settle(d, job["id"], "retrying", attempt,
                        error={"code": code, "message": message, "retryable": True},
                        next_ms=str(now_ms() + int(wait_ms)))

    # --- one delivery (section 7)
    def process(self, d):
        try:
            job = decode_job(d.body)
        except Exception as e:  # any reason, RecursionError for deep nesting included
            self.unreadable(d, e)
            return
        job_id = job["id"]
        _job_ctx.fields = "job=%s type=%s pool=%s worker=%s" % (job_id, job.get("type"), POOL, self.cfg.worker_id)
        try:
            self.run_job(d, job, job_id)
        finally:
            _job_ctx.fields = None

    def run_job(self, d, job, job_id):
        made = header_int(d.props.headers, "x-warren-attempts")
        made = -1 if made is None else made
        lim = self.limit
        if lim is not None and job.get("type") == TYPE_NAME:
            # Section 18: a token from the type's bucket and the tenant's,
            # or the job waits in the delay levels, no attempt counted.
            ok, wait_ms = self.hold(d, "take a rate-limit token", lambda: self.store.take_token(job, made, lim))
            if not ok:
                return
            if wait_ms is not None:
                log.debug("job %s is over its type's rate limit; parking it for %dms", job_id, wait_ms)
                self.park(d, job, max(made, 0), wait_ms)
                return
        token = "%s/%s" % (self.cfg.worker_id, uuid.uuid4())
        ok, started = self.hold(d, "record the start", lambda: self.store.start(job_id, made, token))
        if not ok:
            return
        status, attempt, n = started
        if status == "missing":
            log.warning("no record for job %s; dropping message", job_id)
            d.ack()
            return
        if status in TERMINAL or status == "stale":
            log.info("job %s is %s (attempt %d); acknowledging without running", job_id, status, attempt)
            d.ack()
            return
        if status == "busy":
            # A second copy of an attempt that a live worker runs (the
            # rescuer republished it, or the broker redelivered it after that
            # worker's connection dropped): it must not run beside it, nor
            # vanish, in case that worker dies before the attempt ends.
            log.info("job %s: another worker runs attempt %d; parking this copy for %dms", job_id, attempt, n)
            self.park(d, job, made, n)
            return
        self.mark(n, is_high(job))
        if job["type"] != TYPE_NAME:
            self.fail(d, job, attempt, "unknown_type",
                      "worker %s has no handler for type %s" % (self.cfg.worker_id, job["type"]))
            return
        max_attempts = int(job.get("max_attempts") or 0)
        if 0 < max_attempts < attempt:
            self.fail(d, job, attempt, "attempts_exhausted",
                      "attempt %d of %d was lost with its worker; no attempts remain" % (attempt - 1, max_attempts))
            return
        timeout_ms = int(job.get("timeout_ms") or 0)
        if timeout_ms <= 0:
            timeout_ms = TYPE_TIMEOUT_MS

        canceled = threading.Event()
        with self.running_mu:
            self.running[job_id] = canceled
        began = time.monotonic()
        result, err = None, None
        try:
            payload = job.get("payload")
            result = wordcount(payload if isinstance(payload, dict) else {}, attempt)
        except WorkError as e:
            err = e
        except Exception as e:  # noqa: BLE001 - a crash of the handler
            log.exception("handler of job %s crashed", job_id)
            err = WorkError("panic", "handler crashed: %s" % e)
        finally:
            with self.running_mu:
                self.running.pop(job_id, None)
        took_ms = (time.monotonic() - began) * 1000

        if canceled.is_set():
            log.info("job %s canceled while running", job_id)
            d.ack()
        elif took_ms > timeout_ms:
            self.after_failure(d, job, attempt, WorkError("timeout", "attempt timed out after %s" % go_text(timeout_ms)))
        elif err is not None:
            self.after_failure(d, job, attempt, err)
        else:
            log.debug("job %s attempt %d succeeded", job_id, attempt)
            self.settle(d, job_id, "succeeded", attempt, result=json.dumps(result, separators=(",", ":")))

    def park(self, d, job, made, wait_ms):
        """Publishes the copy again through the delay levels, with the same
        attempts made (section 7.3's headers), to be offered again after
        wait_ms (at least 100 ms); acks it once the broker has confirmed."""
        wait_ms = min(max(wait_ms, DELAY_UNIT_MS), MAX_DELAY_MS)
        ok, _ = self.publish(d, self.cfg.delay_exchange(delay_entry_level(wait_ms)),
                             delay_routing_key(wait_ms, routing_key(job["type"], is_high(job))),
                             self.headers(d, job, made))
        if ok:
            d.ack()

    def mark(self, due_ms, high):
        """Keeps the latest due time of a job this worker started, per lane;
        the lease thread records it."""
        with self.running_mu:
            self.due_mark[high] = max(self.due_mark.get(high, 0), due_ms)

    def after_failure(self, d, job, attempt, err):
        if err.permanent or attempt >= int(job.get("max_attempts") or 0):
            self.fail(d, job, attempt, err.code, err.message)
        else:
            self.retry(d, job, attempt, err.code, err.message)

    def unreadable(self, d, err):
        """Section 7, step 1: no retry can make a message readable. When its
        message id names a job, the job fails with bad_message and the
        message, as it came, is its dead letter; one that names no job is
        rejected, and the broker dead-letters it once."""
        job_id = d.props.message_id
        if not isinstance(job_id, str) or not UUID_RE.match(job_id):
            log.error("rejecting an unreadable message that names no job (%r): %.200s", job_id, err)
            d.drop()
            return
        message = "the worker cannot read the job's message: %.200s" % (err,)
        log.error("job %s failed: its message cannot be read: %.200s", job_id, err)
        h = {"x-warren-error-code": "bad_message", "x-warren-error": message,
             "x-warren-failed-at": str(now_ms())}
        ok, _ = self.publish(d, self.cfg.dead_exchange(), "failed." + POOL, h)
        if ok:
            self.settle(d, job_id, "failed", -1,
                        error={"code": "bad_message", "message": message, "retryable": False})

    def intake(self, d):
        """Section 8: a job whose message the broker dead-lettered fails."""
        try:
            job = decode_job(d.body)
        except Exception as e:  # any reason: it is acknowledged, never looped
            log.error("dropping unreadable dead letter %s: %s", d.props.message_id, e)
            d.ack()
            return
        log.warning("the broker dead-lettered job %s after too many deliveries", job["id"])
        self.settle(d, job["id"], "failed", -1, error={
            "code": "delivery_limit",
            "message": "the message was delivered %d times without an outcome (its worker was lost each time); "
                       "see the dead-letter queue" % DELIVERY_LIMIT,
            "retryable": False})

    # --- threads
    def take(self):
        while True:
            d = self.local.get()
            if d is None:
                return
            if not d.live():
                d.forget()
                continue  # its channel is gone; the broker has requeued it
            if self.stop_taking.is_set():
                d.requeue()
                continue
            if not d.intake and self.held.is_set():
                # Delivered before the pause cancelled the consumer, never
                # started: back to the queue, once.
                d.requeue()
                continue
            while not self.ready.is_set() and d.live() and not self.stop_taking.is_set():
                self.ready.wait(0.2)
            with self.running_mu:
                self.busy += 1
            try:
                self.intake(d) if d.intake else self.process(d)
            except Exception:  # noqa: BLE001 - never lose the thread
                log.exception("unexpected error handling a message; it goes back to the queue")
                d.requeue()
            finally:
                with self.running_mu:
                    self.busy -= 1

    def housekeeping(self, done):
        """Keeps the lease (section 11), records how far the pool's queue
        has come, and re-asserts the type (2.5)."""
        last_declare = time.monotonic()
        while not done.is_set():
            self.wake.clear()
            with self.running_mu:
                since = self.heard
                record = {"id": self.cfg.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
                          "version": VERSION, "started_ms": self.started_ms,
                          "pools": {POOL: {"concurrency": self.cfg.concurrency, "busy": self.busy,
                                           "done": self.done, "failed": self.failed}}}
            try:
                paused, raw = self.store.lease(record)
                self.learn_limit(raw)
                with self.running_mu:
                    if self.heard == since:
                        self.want_paused = paused
                        self.pause_known.set()
                    elif not self.pause_known.is_set():
                        self.wake.set()  # an event came meanwhile: read again at once
            except Exception as e:  # noqa: BLE001
                if not self.pause_known.is_set():
                    # Nothing is consumed until Redis answers once: say why.
                    log.warning("cannot reach Redis to learn whether the pool is paused; "
                                "not taking jobs until it answers: %s", e)
                else:
                    log.debug("cannot renew the worker lease: %s", e)
            with self.running_mu:
                due, self.due_mark = self.due_mark, {}
            if due:
                try:
                    self.store.mark_started(due)
                except Exception as e:  # noqa: BLE001
                    log.debug("cannot record how far the pool's queue has come: %s", e)
            if self.ready.is_set() and time.monotonic() - last_declare >= REDECLARE_EVERY_S:
                last_declare = time.monotonic()
                try:
                    self.store.declare()
                except Exception as e:  # noqa: BLE001
                    log.debug("cannot re-declare the type: %s", e)
            self.wake.wait(LEASE_TTL_S / 3)
        try:
            self.store.release()
        except Exception as e:  # noqa: BLE001
            log.debug("cannot release the worker lease: %s", e)

    def learn_limit(self, raw):
        """Applies the type's rate limit as the lease renewal read it; one
        that cannot be read is logged and ignored, as the Go worker does."""
        if raw == self.limit_raw:
            return
        try:
            lim = parse_limit(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            log.warning("cannot read the rate limit of %s; ignoring it: %s", TYPE_NAME, e)
            lim = None
        self.limit, self.limit_raw = lim, raw
        log.info("rate limit of %s: %s", TYPE_NAME, "none" if lim is None else raw.decode(errors="replace"))

    def events(self, done):
        """Section 10: cancel <id> stops a running job; pause <pool> and
        resume <pool> (section 15) pause and resume consuming."""
        delay = 0.1
        while not done.is_set():
            ps = None
            try:
                ps = self.store.rdb.pubsub(ignore_subscribe_messages=True)
                ps.subscribe(self.cfg.events())
                # Pauses announced while not subscribed were missed: the
                # lease renewal reads them.
                self.wake.set()
                delay = 0.1
                while not done.is_set():
                    m = ps.get_message(timeout=0.5)
                    if not m or m.get("type") != "message":
                        continue
                    kind, _, arg = m["data"].decode(errors="replace").partition(" ")
                    if kind == "cancel":
                        with self.running_mu:
                            ev = self.running.get(arg)
                        if ev is not None:
                            ev.set()
                    elif kind == "limits" and arg == TYPE_NAME:
                        self.wake.set()  # section 18: the renewal reads it
                    elif kind in ("pause", "resume") and arg == POOL:
                        with self.running_mu:
                            self.heard += 1
                            self.want_paused = kind == "pause"
            except Exception as e:  # noqa: BLE001
                log.debug("events subscription lost; resubscribing: %s", e)
                done.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if ps is not None:
                    try:
                        ps.close()
                    except Exception:  # noqa: BLE001
                        pass

    def declare_type(self, session):
        delay = 0.1
        while not self.stop_taking.is_set():
            try:
                self.store.declare()
                return True
            except Exception as e:  # noqa: BLE001
                log.warning("cannot declare the type; retrying in %.1fs: %s", delay, e)
            session.conn.sleep(delay)
            delay = min(delay * 2, 5.0)
        return False

    def run(self):
        house_done, events_done = threading.Event(), threading.Event()
        house = threading.Thread(target=self.housekeeping, args=(house_done,), name="lease")
        events = threading.Thread(target=self.events, args=(events_done,), name="events")
        takers = [threading.Thread(target=self.take, name="job-%d" % i) for i in range(self.cfg.concurrency)]
        for t in [house, events] + takers:
            t.start()
        log.info("worker %s starting: namespace=%s pool=%s type=%s concurrency=%d",
                 self.cfg.worker_id, self.cfg.ns, POOL, TYPE_NAME, self.cfg.concurrency)
        # Whether the pool is paused is known before it is consumed: a
        # worker started while its pool is paused takes nothing.
        while not self.stop_taking.is_set() and not self.pause_known.wait(0.2):
            pass
        delay = 0.1
        while not self.stop_taking.is_set():
            try:
                self.session = Session(self.cfg, self.local.put, self.nodes.order())
                with self.running_mu:
                    paused = self.want_paused
                if paused:
                    self.held.set()
                else:
                    self.held.clear()
                self.session.setup(self.cfg.concurrency, paused)
                if not self.declare_type(self.session):
                    break
                self.ready.set()
                log.info("pool %s %s", POOL, "paused; not consuming" if paused else "consuming")
                delay = 0.1
                while not self.stop_taking.is_set():
                    self.follow_pause(self.session)
                    self.session.conn.process_data_events(time_limit=0.2)
            except (pika.exceptions.AMQPError, OSError) as e:
                self.ready.clear()
                if self.session is not None:
                    self.nodes.lost = self.session.url
                    self.session.close()
                log.warning("AMQP connection lost; reconnecting in %.1fs: %s", delay, e)
                self.stop_taking.wait(delay)
                delay = min(delay * 2, 5.0)
        self.shutdown(takers)
        events_done.set()
        events.join()
        house_done.set()
        self.wake.set()
        house.join()
        log.info("worker %s stopped", self.cfg.worker_id)

    def follow_pause(self, session):
        """Section 15: cancels the pool's consumer when the pool is paused,
        and consumes again when it is resumed. Runs on the connection's
        thread, as every AMQP call must."""
        with self.running_mu:
            paused = self.want_paused
        if paused and not session.paused():
            session.cancel_pool()
            self.held.set()
            log.info("pool %s paused; stopped consuming, running jobs go on", POOL)
        elif not paused and session.paused():
            self.held.clear()
            session.consume_pool()
            log.info("pool %s resumed; consuming", POOL)

    def shutdown(self, takers):
        """Section 9: stop consuming, requeue what was not started, let
        running jobs finish within the grace period, then cancel them."""
        s = self.session
        log.info("shutting down")
        if s is not None and s.alive:
            try:
                s.cancel_consumers()
            except Exception as e:  # noqa: BLE001
                log.warning("cannot cancel consumers: %s", e)
        while True:
            try:
                d = self.local.get_nowait()
            except pyqueue.Empty:
                break
            if d.live():
                d.requeue()
        for _ in takers:
            self.local.put(None)
        deadline = time.monotonic() + self.cfg.grace_s
        while any(t.is_alive() for t in takers):
            if time.monotonic() > deadline and not self.stop_jobs.is_set():
                log.warning("shutdown grace period over; cancelling running jobs")
                self.stop_jobs.set()
            self.pump(s, 0.1)
        if s is not None:
            s.close()

    @staticmethod
    def pump(s, seconds):
        try:
            if s is not None and s.alive and s.conn.is_open:
                s.conn.process_data_events(time_limit=seconds)
                return
        except Exception as e:  # noqa: BLE001
            log.warning("AMQP connection lost during shutdown: %s", e)
            s.alive = False
        time.sleep(seconds)


class QuietExpectedClose(logging.Filter):
    """Drops pika's warning of the channel closes a connection expects: the
    404 that answers whether the classic exit exchange (name) still exists,
    which in all but the oldest namespaces it does not, and the 406 of a
    quorum queue made with another group size (Session.declare_quorum)."""

    def __init__(self, name):
        super().__init__()
        self.exchange = name

    def filter(self, record):
        args = record.args if isinstance(record.args, tuple) else ()
        return not (len(args) >= 2 and (args[0] == 404 and "'%s'" % self.exchange in str(args[1]) or
                                        args[0] == 406 and "x-quorum-initial-group-size" in str(args[1])))


def go_text(ms):
    """Go duration text of a whole number of milliseconds, e.g. 30s, 10m0s, 1.5s."""
    ms = int(ms)
    h, rest = divmod(ms, 3600000)
    m, rest = divmod(rest, 60000)
    s, frac = divmod(rest, 1000)
    secs = "%d" % s if frac == 0 else ("%d.%03d" % (s, frac)).rstrip("0")
    if ms < 1000:
        return "%dms" % ms if ms else "0s"
    if h:
        return "%dh%dm%ss" % (h, m, secs)
    if m:
        return "%dm%ss" % (m, secs)
    return secs + "s"


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if os.environ.get("WARREN_LOG_LEVEL") == "debug"
                        else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    # The worker reports a node it cannot connect to (Session) or a
    # connection it lost (Worker.run) itself, in a line; pika's own reports
    # of them take ten, with a traceback.
    for name in ("pika.adapters.utils.connection_workflow", "pika.adapters.utils.io_services_utils"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("pika.adapters.blocking_connection").addFilter(
        lambda r: not str(r.msg).startswith(("Connection workflow failed", "Error in _create_connection()")))
    try:
        cfg = Config(os.environ)
    except ValueError as e:
        log.error("configuration: %s", e)
        return 2
    logging.getLogger("pika.channel").addFilter(QuietExpectedClose(cfg.classic_deliver_exchange()))
    w = Worker(cfg)

    def stop(signum, _frame):
        log.info("received %s; stopping", signal.Signals(signum).name)
        w.stop_taking.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    w.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
