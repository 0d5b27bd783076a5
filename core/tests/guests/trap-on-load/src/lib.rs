//! A test guest that cannot even be instantiated under the host's limits:
//! a 128 MiB zeroed static makes its initial memory larger than the 64 MiB a
//! plugin may have, so instantiation traps before any call. (It lives in
//! `.bss`, so the file stays small.) The host must refuse it at load time,
//! so that a reload keeps the previous plugin.

use statushook_plugin::{Outgoing, Plugin, Settings, StatusEvent};

/// Never reached: instantiation fails first.
pub struct TrapOnLoad;

static mut BALLAST: [u8; 128 << 20] = [0; 128 << 20];

impl Plugin for TrapOnLoad {
    fn format(event: StatusEvent, _settings: Settings) -> Result<Option<Outgoing>, String> {
        // Touch the ballast so it is not optimised away.
        let first = unsafe { std::ptr::addr_of!(BALLAST).cast::<u8>().read_volatile() };
        Ok((first == 1).then(|| {
            statushook_plugin::json_body(&statushook_plugin::serde_json::json!({"id": event.id}))
        }))
    }
}

#[cfg(target_arch = "wasm32")]
statushook_plugin::export_plugin!(TrapOnLoad);
