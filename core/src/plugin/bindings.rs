//! Host bindings generated from `wit/plugin.wit`, and the conversion of the
//! domain event into its WIT mirror.

use crate::event::{self, StatusEvent};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "statushook:plugin/plugin",
});

pub(crate) use self::statushook::plugin::log::Level;
use self::statushook::plugin::types as wit;
pub(crate) use self::statushook::plugin::types::Outgoing as WitOutgoing;

/// The export every plugin must provide, with the version this host speaks.
pub(crate) const FORMATTER_EXPORT: &str = "statushook:plugin/formatter@0.1.0";
/// The export name without its version, to recognise other contract versions.
pub(crate) const FORMATTER_UNVERSIONED: &str = "statushook:plugin/formatter";

impl From<event::Status> for wit::Status {
    fn from(status: event::Status) -> Self {
        use event::Status as S;
        match status {
            S::Queued => wit::Status::Queued,
            S::Created => wit::Status::Created,
            S::Sent => wit::Status::Sent,
            S::Delivered => wit::Status::Delivered,
            S::Read => wit::Status::Read,
            S::Replied => wit::Status::Replied,
            S::Failed => wit::Status::Failed,
            S::NumberNotFound => wit::Status::NumberNotFound,
            S::Expired => wit::Status::Expired,
            S::Disconnected => wit::Status::Disconnected,
        }
    }
}

/// The WIT mirror of `event`, as handed to a plugin.
pub(crate) fn to_wit(event: &StatusEvent) -> wit::StatusEvent {
    wit::StatusEvent {
        id: event.id.clone(),
        bot_id: event.bot_id.clone(),
        message_id: event.message_id.clone(),
        status: event.status.into(),
        timestamp: event.timestamp,
        recipient: event.recipient.clone(),
        sender: event.sender.clone(),
        channel_name: event.channel_name.clone(),
        campaign: event.campaign.as_ref().map(|c| wit::Campaign {
            id: c.id.clone(),
            name: c.name.clone(),
        }),
        template: event.template.clone(),
        reply: event.reply.clone(),
        error: event.error.as_ref().map(|e| wit::ErrorInfo {
            code: e.code.clone(),
            title: e.title.clone(),
            message: e.message.clone(),
            details: e.details.clone(),
            type_: e.kind.clone(),
            trace_id: e.trace_id.clone(),
        }),
        final_: event.is_final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conversion maps each status to the WIT case of the same name
    /// (`NumberNotFound` is `number-not-found`), so no two statuses can be
    /// swapped by a slip in the match above.
    #[test]
    fn each_status_becomes_the_wit_case_of_its_name() {
        for status in event::Status::ALL {
            let wit = format!("{:?}", wit::Status::from(status));
            assert_eq!(wit, format!("Status::{status:?}"), "{status}");
        }
    }
}
