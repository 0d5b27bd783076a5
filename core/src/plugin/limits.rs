//! The resource limits every plugin call runs under.

use std::time::Duration;

/// Limits applied to each plugin call.
///
/// The defaults suit the built-in plugins (a few microseconds and about 1 MiB
/// of memory per call) with wide margins, and leave room for guests written
/// in JavaScript or Python, which need milliseconds and ~10 MiB per instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// CPU time one call (instantiation included) may use before it is
    /// stopped (or ten times as much wall time). Enforced by epoch
    /// interruption, within [`PluginLimits::EPOCH_TICK`].
    pub timeout: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// The largest body a plugin may return, in bytes.
    pub max_output_bytes: usize,
    /// How much a call may write to the log (the `log` import, stdout and
    /// stderr together), in bytes; the rest is dropped with a note.
    pub max_log_bytes: usize,
    /// How many plugin instances may render at once across the process.
    /// More renders wait for a slot; this also sizes the pooling allocator
    /// (twice over: as many again may be kept warm).
    pub max_concurrent_instances: u32,
    /// How much linear memory the instances kept warm between renders may
    /// hold, across every plugin, in bytes; `0` renders every request in a
    /// fresh instance.
    pub warm_memory_bytes: usize,
}

impl PluginLimits {
    /// The resolution of `timeout`: a call past it is stopped within this
    /// long.
    pub const EPOCH_TICK: Duration = Duration::from_millis(5);
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout: Duration::from_millis(100),
            max_memory_bytes: 64 << 20,
            max_output_bytes: 1 << 20,
            max_log_bytes: 16 << 10,
            max_concurrent_instances: 64,
            warm_memory_bytes: 64 << 20,
        }
    }
}
