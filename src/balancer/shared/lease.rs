//! The lease in Redis: three Lua scripts (grant, renew, release), each one atomic EVALSHA
//! (loaded on first use and again after a Redis restart), and the bounded connection that
//! runs them.
//!
//! # The data
//!
//! A group `NAME` is two hashes:
//!
//! - `lb:{NAME}:meta`: `recover_until`, the Redis time (ms) before which nothing is granted.
//!   Its absence means the group's state is gone (a new group, or Redis restarted empty):
//!   whichever script finds it absent creates it with `recover_until = now + lease + grace`.
//! - `lb:{NAME}:leases`: one field per instance id, `"seq share held demand exp"`:
//!   `share` is what the instance may use for new dispatches, `held` what the group counts
//!   against `-N` for it (`max(share, cap, in_flight)` as last reported: it covers everything
//!   the instance may have in flight until its next renewal), `exp` the Redis time its lease
//!   ends. An entry with `now > exp` is expired: it keeps its `held` (quarantine) until
//!   `exp + grace`, when any script removes it.
//!
//! Both keys get a TTL of ten times lease + grace (at least a minute), renewed by every call,
//! so a group whose instances are all gone leaves nothing behind.
//!
//! # The rule that keeps the bound
//!
//! A grant or renewal gives `share = min(want, N - Σ held of every other entry)` (0 while
//! recovering, never below 0). Time is Redis' own (`TIME`), never the caller's. See DESIGN.md
//! (Shared limit) for the proof that Σ held ≤ N and that each instance's work in flight stays
//! within its `held`.

use super::settings::Settings;
use std::time::Duration;

/// Every Redis call is bounded by this: connect (with the handshake), write and read.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(200);

/// Shared by grant and renew: read the group, purge expired-past-grace entries, clamp the
/// share, store and answer. `MODE` is set by the script that includes it.
const SETTLE: &str = r#"
local function decode(s)
  local f = {}
  for x in string.gmatch(s, '%S+') do f[#f + 1] = tonumber(x) end
  return { seq = f[1], share = f[2], held = f[3], demand = f[4], exp = f[5] }
end
local id = ARGV[1]
local seq, demand, in_flight, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local want, limit, lease, grace = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local recover_until
if fresh then
  -- The group's state is gone: leases may still be held against it. Grant nothing until
  -- every one of them has ended and its grace passed.
  recover_until = now + lease + grace
  redis.call('HSET', KEYS[1], 'recover_until', string.format('%d', recover_until))
else
  recover_until = tonumber(redis.call('HGET', KEYS[1], 'recover_until') or '0') or 0
end
local raw = redis.call('HGETALL', KEYS[2])
local others_held, me, out = 0, nil, {}
for i = 1, #raw, 2 do
  local e = decode(raw[i + 1])
  if now > e.exp + grace then
    redis.call('HDEL', KEYS[2], raw[i])
  elseif raw[i] == id then
    me = e
  else
    others_held = others_held + e.held
    out[#out + 1] = raw[i]
    out[#out + 1] = e.share
    out[#out + 1] = e.held
    out[#out + 1] = e.demand
    out[#out + 1] = (now > e.exp) and 1 or 0
  end
end
local lost = 0
if me == nil then
  if MODE == 'renew' and not fresh then lost = 1 end
  me = { seq = 0, share = 0, held = 0, demand = 0, exp = 0 }
elseif seq <= me.seq then
  return { 'stale' }
end
local share = math.min(want, limit - others_held)
if share < 0 or now < recover_until then share = 0 end
me.seq, me.share, me.demand, me.exp = seq, share, demand, now + lease
me.held = math.max(share, cap, in_flight)
redis.call('HSET', KEYS[2], id, string.format('%d %d %d %d %d', me.seq, me.share, me.held, me.demand, me.exp))
local ttl = math.max(60000, 10 * (lease + grace))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local state = 'leased'
if now < recover_until then state = 'recovering' end
local head = { state, share, me.held, math.max(0, recover_until - now), lost }
for i = 1, #out do head[#head + 1] = out[i] end
return head
"#;

/// Release: an instance leaving (after its drain). With nothing in flight its entry goes at
/// once and its slots are free; otherwise what it still holds stays quarantined for the grace.
/// ARGV: id, in_flight.
const RELEASE: &str = r#"
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local in_flight = tonumber(ARGV[2])
if in_flight == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
local f = {}
for x in string.gmatch(raw, '%S+') do f[#f + 1] = tonumber(x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d %d %d %d %d', f[1], 0, in_flight, 0, now - 1))
return 2
"#;

/// What an instance reports with each grant or renewal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Increases with every call of this instance; Redis refuses an older one arriving late.
    pub seq: u64,
    /// Waiting + in flight.
    pub demand: usize,
    pub in_flight: usize,
    /// The share it enforces now (from its last successful call; 0 before the first).
    pub cap: usize,
    /// The share it asks for (`share::target`).
    pub want: usize,
    /// The group's `-N`.
    pub limit: usize,
}

/// Another instance as Redis holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub share: usize,
    pub held: usize,
    pub demand: usize,
    /// Its lease ended; its `held` is quarantined until the grace ends.
    pub expired: bool,
}

/// Redis' answer to a grant or renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A lease (`recovering`: with share 0 until `recover_left` has passed).
    Lease {
        share: usize,
        held: usize,
        recovering: bool,
        recover_left: Duration,
        /// A renewal found its entry gone although the group was there: its lease had
        /// expired past the grace; this is a fresh grant.
        lost: bool,
        peers: Vec<Peer>,
    },
    /// A newer call of ours already ran: this one changed nothing.
    Stale,
}

/// Why a call failed: the step and the error, for one log line.
#[derive(Debug)]
pub struct CallError(pub String);

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A connection to the group's Redis, made on demand and dropped on any error (a timed-out
/// reply may still arrive, and must not be taken for the next one's).
pub struct Store {
    client: redis::Client,
    conn: Option<redis::Connection>,
    grant: redis::Script,
    renew: redis::Script,
    release: redis::Script,
    keys: [String; 2],
    lease_ms: u64,
    grace_ms: u64,
    /// For messages: `redis://HOST:PORT/DB`.
    pub url: String,
}

impl Store {
    pub fn new(s: &Settings) -> Result<Store, CallError> {
        use redis::IntoConnectionInfo;
        let fail = |e: redis::RedisError| CallError(format!("{}: {e}", s.url));
        let info = redis::ConnectionAddr::Tcp(s.host.clone(), s.port)
            .into_connection_info()
            .map_err(fail)?
            .set_redis_settings(redis::RedisConnectionInfo::default().set_db(i64::from(s.db)));
        let client = redis::Client::open(info).map_err(fail)?;
        let script = |mode: &str| redis::Script::new(&format!("local MODE = '{mode}'\n{SETTLE}"));
        Ok(Store {
            client,
            conn: None,
            grant: script("grant"),
            renew: script("renew"),
            release: redis::Script::new(RELEASE),
            keys: [format!("lb:{{{}}}:meta", s.name), format!("lb:{{{}}}:leases", s.name)],
            lease_ms: s.lease.as_millis() as u64,
            grace_ms: s.grace.as_millis() as u64,
            url: s.url.clone(),
        })
    }

    /// The first lease of this instance (`first`), or a renewal.
    pub fn settle(&mut self, id: &str, r: &Report, first: bool) -> Result<Answer, CallError> {
        let (lease, grace) = (self.lease_ms, self.grace_ms);
        let script = if first { &self.grant } else { &self.renew };
        let mut call = script.key(&self.keys[0]);
        call.key(&self.keys[1]).arg(id).arg(r.seq).arg(r.demand).arg(r.in_flight).arg(r.cap).arg(r.want);
        call.arg(r.limit).arg(lease).arg(grace);
        let conn = connection(&self.client, &mut self.conn, &self.url)?;
        let reply: Result<Vec<String>, _> = call.invoke(conn);
        match reply {
            Ok(words) => parse(&words).map_err(|e| CallError(format!("{}: unexpected answer: {e}", self.url))),
            Err(e) => {
                self.conn = None;
                Err(CallError(format!("{}: {e}", self.url)))
            }
        }
    }

    /// Gives the lease back: `in_flight` slots stay quarantined for the grace, the rest are
    /// free at once.
    pub fn release(&mut self, id: &str, in_flight: usize) -> Result<(), CallError> {
        let mut call = self.release.key(&self.keys[0]);
        call.key(&self.keys[1]).arg(id).arg(in_flight);
        let conn = connection(&self.client, &mut self.conn, &self.url)?;
        let reply: Result<i64, _> = call.invoke(conn);
        reply.map(drop).map_err(|e| {
            self.conn = None;
            CallError(format!("{}: {e}", self.url))
        })
    }
}

/// The open connection, or a new one (connect and handshake within `CALL_TIMEOUT`, then
/// every read and write bounded by it too).
fn connection<'c>(
    client: &redis::Client,
    slot: &'c mut Option<redis::Connection>,
    url: &str,
) -> Result<&'c mut redis::Connection, CallError> {
    if slot.is_none() {
        let c = client
            .get_connection_with_timeout(CALL_TIMEOUT)
            .map_err(|e| CallError(format!("cannot connect to {url}: {e}")))?;
        let set = c.set_read_timeout(Some(CALL_TIMEOUT)).and(c.set_write_timeout(Some(CALL_TIMEOUT)));
        set.map_err(|e| CallError(format!("{url}: cannot bound the connection: {e}")))?;
        *slot = Some(c);
    }
    // Just set when it was None.
    slot.as_mut().ok_or_else(|| CallError("internal: no connection".into()))
}

/// The script's reply: `stale`, or state, share, held, recover_left_ms, lost, then five
/// words per other instance.
fn parse(words: &[String]) -> Result<Answer, String> {
    let num = |i: usize| -> Result<usize, String> {
        let w = words.get(i).ok_or_else(|| format!("{} words", words.len()))?;
        w.parse::<i64>().map(|v| v.max(0) as usize).map_err(|_| format!("'{w}' is not a number"))
    };
    let state = words.first().ok_or("an empty answer")?;
    if state == "stale" {
        return Ok(Answer::Stale);
    }
    if state != "leased" && state != "recovering" {
        return Err(format!("state '{state}'"));
    }
    let rest = words.get(5..).unwrap_or(&[]);
    if rest.len() % 5 != 0 {
        return Err(format!("{} words", words.len()));
    }
    let mut peers = Vec::with_capacity(rest.len() / 5);
    for (k, chunk) in rest.chunks(5).enumerate() {
        let base = 5 + 5 * k;
        peers.push(Peer {
            id: chunk[0].clone(),
            share: num(base + 1)?,
            held: num(base + 2)?,
            demand: num(base + 3)?,
            expired: num(base + 4)? != 0,
        });
    }
    Ok(Answer::Lease {
        share: num(1)?,
        held: num(2)?,
        recovering: state == "recovering",
        recover_left: Duration::from_millis(num(3)? as u64),
        lost: num(4)? != 0,
        peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn answers_parse() {
        assert_eq!(parse(&w("stale")).unwrap(), Answer::Stale);
        let a = parse(&w("leased 3 5 0 0 b 2 3 9 1")).unwrap();
        let Answer::Lease { share, held, recovering, lost, peers, .. } = a else { panic!() };
        assert_eq!((share, held, recovering, lost), (3, 5, false, false));
        assert_eq!(peers, vec![Peer { id: "b".into(), share: 2, held: 3, demand: 9, expired: true }]);
        let Answer::Lease { recovering, recover_left, .. } = parse(&w("recovering 0 0 1500 1")).unwrap() else {
            panic!()
        };
        assert!(recovering);
        assert_eq!(recover_left, Duration::from_millis(1500));
        assert!(parse(&w("leased 3 5 0 0 b 2")).is_err());
        assert!(parse(&w("what")).is_err());
        assert!(parse(&[]).is_err());
    }
}
