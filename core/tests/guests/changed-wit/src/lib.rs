//! A test guest whose WIT changed without a version bump: the same package,
//! `statushook:plugin@0.1.0`, but `status-event.timestamp` is a `u32`. The
//! host must refuse it naming the function, the field and both types.

wit_bindgen::generate!({
    inline: r#"
package statushook:plugin@0.1.0;

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
        timestamp: u32,
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

/// The changed plugin: drops every event.
struct ChangedField;

impl Guest for ChangedField {
    fn format(
        _event: StatusEvent,
        _settings: Vec<(String, String)>,
    ) -> Result<Option<Outgoing>, String> {
        Ok(None)
    }
}

export!(ChangedField);
