//! The process's one wasmtime `Engine`: its configuration and the pooling
//! allocator probe (the epoch it interrupts calls by is `watchdog.rs`'s).

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::limits::PluginLimits;

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Pre-reserved slots: instantiation in ~10 us, the normal case.
    Pooling,
    /// mmap per instance: the fallback where address space is short.
    OnDemand,
}

/// Creates the engine, preferring the pooling allocator.
///
/// The pool reserves virtual address space for every slot up front; where that
/// fails (a low `ulimit -v`, a 32-bit host) the engine falls back to on-demand
/// allocation, which is slower to instantiate but otherwise the same.
pub(crate) fn build(
    limits: &PluginLimits,
    pooling: bool,
) -> wasmtime::Result<(Engine, Allocation)> {
    if !pooling {
        return Ok((
            Engine::new(&config(limits, Allocation::OnDemand))?,
            Allocation::OnDemand,
        ));
    }
    match Engine::new(&config(limits, Allocation::Pooling)) {
        Ok(engine) => Ok((engine, Allocation::Pooling)),
        Err(error) => {
            tracing::warn!(
                %error,
                "the pooling allocator is unavailable; plugin instances are allocated on demand (slower)"
            );
            Ok((
                Engine::new(&config(limits, Allocation::OnDemand))?,
                Allocation::OnDemand,
            ))
        }
    }
}

fn config(limits: &PluginLimits, allocation: Allocation) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed);
    if allocation == Allocation::Pooling {
        // Instances rendering, and as many again kept warm between renders.
        let slots = limits.max_concurrent_instances.max(1).saturating_mul(2);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasm32-wasip2 component holds 3-4 core instances, 1-2
        // memories and 1-3 tables; guests from other toolchains hold more.
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(8))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(4))
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(limits.max_memory_bytes)
            // Keep a few slots warm so a burst does not re-fault memory.
            .max_unused_warm_slots(slots.min(16));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}
