//! The Lua scripts, and the one way to call them.

use std::time::Duration;

use redis::{FromRedisValue, RetryMethod, Script, ScriptInvocation};

use super::connect::Conn;
use super::{RedisQueue, unavailable};
use crate::queue::QueueError;

/// Every script the backend runs; each is one atomic state change.
pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) claim: Script,
    pub(super) ack: Script,
    pub(super) retry: Script,
    pub(super) dead: Script,
    pub(super) dead_letters: Script,
    pub(super) replay: Script,
    pub(super) hold: Script,
    pub(super) depth: Script,
    pub(super) migrate: Script,
    pub(super) log_page: Script,
    pub(super) delivery: Script,
    pub(super) resend: Script,
    pub(super) lane_states: Script,
    pub(super) trim_log: Script,
}

impl Scripts {
    /// The scripts, compiled into the binary.
    pub(super) fn new() -> Self {
        Scripts {
            enqueue: with_lanes(include_str!("lua/enqueue.lua")),
            claim: with_lanes(include_str!("lua/claim.lua")),
            ack: with_lanes(include_str!("lua/ack.lua")),
            retry: with_lanes(include_str!("lua/retry.lua")),
            dead: with_lanes(include_str!("lua/dead.lua")),
            dead_letters: Script::new(include_str!("lua/dead_letters.lua")),
            replay: with_lanes(include_str!("lua/replay.lua")),
            hold: with_lanes(include_str!("lua/hold.lua")),
            depth: Script::new(include_str!("lua/depth.lua")),
            migrate: with_lanes(include_str!("lua/migrate.lua")),
            log_page: with_lanes(include_str!("lua/log_page.lua")),
            delivery: with_lanes(include_str!("lua/delivery.lua")),
            resend: with_lanes(include_str!("lua/resend.lua")),
            lane_states: Script::new(include_str!("lua/lane_states.lua")),
            trim_log: with_lanes(include_str!("lua/trim_log.lua")),
        }
    }
}

/// A script that moves or reads jobs: the shared functions of `lanes.lua`
/// (lanes, requeueing, the delivery log), then its own body.
fn with_lanes(body: &str) -> Script {
    Script::new(&[include_str!("lua/lanes.lua"), body].concat())
}

impl RedisQueue {
    /// Runs `script` on shard `shard`, whose tag it gets as its one key (so
    /// a cluster routes it to the node holding the shard) and as its first
    /// argument, then the arguments `args` adds; reads its answer as `T`.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        shard: usize,
        script: &Script,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> Result<T, QueueError> {
        let mut conn = self.conn().await?;
        self.run_on(&mut conn, shard, script, args)
            .await
            .map_err(unavailable)
    }

    /// [`RedisQueue::run`] on `conn`, answering Redis's own error (for a
    /// caller that hands it to several waiters).
    pub(super) async fn run_on<T: FromRedisValue>(
        &self,
        conn: &mut Conn,
        shard: usize,
        script: &Script,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> redis::RedisResult<T> {
        let tag = self.shards.tag(shard);
        let mut call = script.prepare_invoke();
        call.key(tag).arg(tag);
        args(&mut call);
        invoke(conn, &call).await
    }
}

/// Pauses before sending again a script a Redis Cluster refused without
/// running it (see [`invoke`]).
const REFUSED_PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(1000),
];

/// Runs `call` on `conn`. A cluster failing over answers redirects between
/// nodes that disagree for a moment, which the client follows only a few
/// times at once; such a refusal (the script did not run, so sending it
/// again is safe) is retried after a pause, up to about 1.4 s in all,
/// instead of failing an ack into a second send or an enqueue into a `503`.
pub(super) async fn invoke<T: FromRedisValue>(
    conn: &mut Conn,
    call: &ScriptInvocation<'_>,
) -> redis::RedisResult<T> {
    let mut pauses = REFUSED_PAUSES.iter();
    loop {
        match call.invoke_async(conn).await {
            Err(error) if refused(&error) => match pauses.next() {
                Some(pause) => tokio::time::sleep(*pause).await,
                None => return Err(error),
            },
            answer => return answer,
        }
    }
}

/// Whether Redis refused the command without running it.
fn refused(error: &redis::RedisError) -> bool {
    matches!(
        error.retry_method(),
        RetryMethod::MovedRedirect
            | RetryMethod::AskRedirect
            | RetryMethod::RefreshSlotsAndRetry
            | RetryMethod::WaitAndRetry
    )
}
