//! A test guest built against a contract version the host does not support:
//! the same shape as `wit/plugin.wit`, but `statushook:plugin@0.2.0`. The host
//! must refuse it with an error naming the version it found and the ones it
//! supports. Were it accepted, it would drop every event.

wit_bindgen::generate!({
    inline: r#"
package statushook:plugin@0.2.0;

interface types {
    enum status {
        queued,
        created,
        sent,
        delivered,
        read,
        replied,
        failed,
        number-not-found,
        expired,
        disconnected,
    }

    record campaign {
        id: string,
        name: option<string>,
    }

    record error-info {
        code: string,
        title: option<string>,
        message: option<string>,
        details: option<string>,
        %type: option<string>,
        trace-id: option<string>,
    }

    record status-event {
        id: string,
        bot-id: string,
        message-id: option<string>,
        status: status,
        timestamp: u64,
        recipient: option<string>,
        sender: option<string>,
        channel-name: option<string>,
        campaign: option<campaign>,
        template: option<string>,
        reply: option<string>,
        error: option<error-info>,
        final: bool,
    }

    record outgoing {
        content-type: string,
        headers: list<tuple<string, string>>,
        body: list<u8>,
    }
}

interface log {
    enum level {
        debug,
        info,
        warn,
        error,
    }

    log: func(level: level, message: string);
}

interface formatter {
    use types.{status-event, outgoing};

    format: func(event: status-event, settings: list<tuple<string, string>>) -> result<option<outgoing>, string>;
}

world plugin {
    import log;
    export formatter;
}
"#,
});

use exports::statushook::plugin::formatter::{Guest, Outgoing, StatusEvent};

/// The 0.2.0 plugin: drops every event.
struct OtherVersion;

impl Guest for OtherVersion {
    fn format(
        _event: StatusEvent,
        _settings: Vec<(String, String)>,
    ) -> Result<Option<Outgoing>, String> {
        Ok(None)
    }
}

export!(OtherVersion);
