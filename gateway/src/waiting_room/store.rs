//! Where waiting rooms keep their state: in this process on the embedded
//! default (one node), in Redis when nodes share it. Both run the steps of
//! [`super::plan::step`]; Redis runs them as one Lua script, so concurrent
//! visitors on every node see one queue.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::plan::{self, Arrival, Entry, Limits, Outcome, Room};
use crate::session::StoreError;

/// One visitor's step through room `room`.
#[async_trait]
pub trait RoomStore: Send + Sync {
    async fn step(
        &self,
        room: &str,
        arrival: Arrival,
        now: i64,
        limits: &Limits,
    ) -> Result<Outcome, StoreError>;
}

/// A random room epoch (never 0, which no store uses).
fn new_epoch() -> u64 {
    rand::random::<u64>().max(1) >> 1
}

/// Rooms in this process.
#[derive(Default)]
pub struct MemoryRooms {
    rooms: Mutex<HashMap<String, Room>>,
}

#[async_trait]
impl RoomStore for MemoryRooms {
    async fn step(
        &self,
        room: &str,
        arrival: Arrival,
        now: i64,
        limits: &Limits,
    ) -> Result<Outcome, StoreError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = rooms.get_mut(room) {
            return Ok(plan::step(r, arrival, now, limits));
        }
        let r = rooms.entry(room.to_string()).or_insert_with(|| Room {
            epoch: new_epoch(),
            ..Room::default()
        });
        Ok(plan::step(r, arrival, now, limits))
    }
}

/// The steps of `plan::step` on one Redis hash: `epoch`, `issued`,
/// `serving`, `i:<bucket>` (stays ending then) and `e:<bucket>` (entries).
const STEP: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local kind = ARGV[2]
local n = tonumber(ARGV[3])
local epoch_in = ARGV[4]
local size, rate = tonumber(ARGV[5]), tonumber(ARGV[6])
local session, claim = tonumber(ARGV[7]), tonumber(ARGV[8])
local B, MINUTE = 5, 60
redis.call('HSETNX', key, 'epoch', ARGV[9])
local h = redis.call('HGETALL', key)
local epoch, issued, serving, active, recent = '0', 0, 0, 0, 0
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  if f == 'epoch' then epoch = v
  elseif f == 'issued' then issued = tonumber(v)
  elseif f == 'serving' then serving = tonumber(v)
  else
    local t, b = string.sub(f, 1, 1), tonumber(string.sub(f, 3))
    if t == 'i' and b > now then active = active + tonumber(v)
    elseif t == 'e' and b > now - MINUTE then recent = recent + tonumber(v)
    else redis.call('HDEL', key, f) end
  end
end
local function up(t) if t % B == 0 then return t end return t - (t % B) + B end
local function down(t) return t - (t % B) end
local function room_for() return math.max(0, math.min(size - active, rate - recent)) end
local function stay(k, untl) redis.call('HINCRBY', key, 'i:' .. up(untl), k); active = active + k end
local function enter(k, untl) stay(k, untl); redis.call('HINCRBY', key, 'e:' .. down(now), k); recent = recent + k end
local k = math.min(room_for(), issued - serving)
if k > 0 then serving = serving + k; redis.call('HSET', key, 'serving', serving); enter(k, now + claim) end
local untl = now + session
if kind == 'place' and (epoch_in ~= epoch or n > issued) then kind = 'new' end
local state, a
if kind == 'new' then
  if issued == serving and room_for() > 0 then enter(1, untl); state, a = 'in', untl
  else issued = issued + 1; redis.call('HSET', key, 'issued', issued); state, a = 'wait', issued end
elseif kind == 'place' then
  if n <= serving then stay(1, untl); state, a = 'in', untl else state, a = 'wait', n end
else
  if epoch_in == epoch then
    local f = 'i:' .. up(n)
    local c = tonumber(redis.call('HGET', key, f) or '0')
    if c > 1 then redis.call('HINCRBY', key, f, -1) elseif c == 1 then redis.call('HDEL', key, f) end
    if c > 0 then active = active - 1 end
  end
  stay(1, untl); state, a = 'in', untl
end
redis.call('EXPIRE', key, session + PLACE_TTL_PLACEHOLDER)
return {state, a, epoch, issued - serving, active, recent, serving}
"#;

/// Rooms in Redis, shared by every node.
pub struct RedisRooms {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    script: redis::Script,
    timeout: Duration,
}

impl RedisRooms {
    pub fn new(conn: redis::aio::ConnectionManager, prefix: &str, timeout: Duration) -> RedisRooms {
        let source = STEP.replace(
            "PLACE_TTL_PLACEHOLDER",
            &super::ticket::PLACE_TTL.to_string(),
        );
        RedisRooms {
            conn,
            prefix: prefix.to_string(),
            script: redis::Script::new(&source),
            timeout,
        }
    }

    /// Connects to `url` with every answer bounded by `timeout`.
    pub async fn open(
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<RedisRooms, StoreError> {
        let (_, conn) = crate::session::redis::connect(url, timeout).await?;
        Ok(RedisRooms::new(conn, prefix, timeout))
    }
}

type Answer = (String, i64, String, i64, i64, i64, i64);

#[async_trait]
impl RoomStore for RedisRooms {
    async fn step(
        &self,
        room: &str,
        arrival: Arrival,
        now: i64,
        limits: &Limits,
    ) -> Result<Outcome, StoreError> {
        let (kind, n, epoch) = match arrival {
            Arrival::New => ("new", 0, String::new()),
            Arrival::Place { ticket, epoch } => ("place", ticket as i64, epoch.to_string()),
            Arrival::Renew { until, epoch } => ("renew", until, epoch.to_string()),
        };
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!("{}room:{room}", self.prefix))
            .arg(now)
            .arg(kind)
            .arg(n)
            .arg(epoch)
            .arg(limits.active_users)
            .arg(limits.new_per_minute)
            .arg(limits.session)
            .arg(limits.claim)
            .arg(new_epoch().to_string());
        let mut conn = self.conn.clone();
        let answer: Answer = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| StoreError::Unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        outcome(answer)
    }
}

fn outcome(
    (state, a, epoch, queue, active, per_minute, serving): Answer,
) -> Result<Outcome, StoreError> {
    let bad = || StoreError::Unavailable("the waiting-room script answered nonsense".into());
    let entry = match state.as_str() {
        "in" => Entry::Inside { until: a },
        "wait" => {
            let ticket = u64::try_from(a).map_err(|_| bad())?;
            let serving = u64::try_from(serving).map_err(|_| bad())?;
            Entry::Waiting {
                ticket,
                ahead: ticket.saturating_sub(serving + 1),
            }
        }
        _ => return Err(bad()),
    };
    Ok(Outcome {
        entry,
        epoch: epoch.parse().map_err(|_| bad())?,
        queue: u64::try_from(queue).map_err(|_| bad())?,
        active: u64::try_from(active).map_err(|_| bad())?,
        per_minute: u64::try_from(per_minute).map_err(|_| bad())?,
    })
}
