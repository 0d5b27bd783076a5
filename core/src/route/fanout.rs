//! [`fan_out`]: accepted events to rendered deliveries.

use std::borrow::Cow;

use super::{Snapshot, Webhook};
use crate::event::StatusEvent;
use crate::plugin::RenderError;
use crate::queue::{BORN_DEAD, Delivery, NewDelivery, NewEvent, new_delivery_id, now_ms};

/// What rendering did, for metrics and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanOutReport {
    /// Per (bot, webhook): deliveries created.
    pub rendered: Vec<(String, String)>,
    /// Per (bot, webhook): events the plugin dropped (the format has no such status).
    pub dropped: Vec<(String, String)>,
    /// Per (bot, webhook): plugin failures, each now a dead letter.
    pub failed: Vec<(String, String, RenderError)>,
    /// Per (bot, webhook) rendered in this call: how long its plugin took
    /// per event (its batch's time over its events), so a slow plugin shows
    /// as itself in `plugin_render_seconds`.
    pub render_per_event: Vec<(String, String, std::time::Duration)>,
}

/// Renders `events` (all for bots of `snapshot`, already validated) for every
/// webhook that subscribes to their status.
///
/// Each (webhook, request) pair renders in one plugin instance, kept warm
/// for the webhook's next request: the webhook's events of this request are
/// rendered in one batch. An event whose bot has
/// no channel name gets the bot's configured one first. Returns one
/// [`NewEvent`] per input event, in order.
///
/// CPU-bound (microseconds per render): run it on a blocking thread.
pub fn fan_out(snapshot: &Snapshot, events: &[StatusEvent]) -> (Vec<NewEvent>, FanOutReport) {
    let mut report = FanOutReport::default();
    let mut out: Vec<NewEvent> = events
        .iter()
        .map(|e| NewEvent {
            bot: e.bot_id.clone(),
            event_id: e.id.clone(),
            deliveries: Vec::new(),
        })
        .collect();

    // Fill channel_name from config, without copying events that have one.
    let events: Vec<Cow<'_, StatusEvent>> = events
        .iter()
        .map(|event| {
            match snapshot
                .bot(&event.bot_id)
                .and_then(|b| b.config.channel_name.as_ref())
            {
                Some(name) if event.channel_name.is_none() => {
                    let mut filled = event.clone();
                    filled.channel_name = Some(name.clone());
                    Cow::Owned(filled)
                }
                _ => Cow::Borrowed(event),
            }
        })
        .collect();

    let mut bots: Vec<&str> = events.iter().map(|e| e.bot_id.as_str()).collect();
    bots.sort_unstable();
    bots.dedup();
    for bot_id in bots {
        let Some(bot) = snapshot.bot(bot_id) else {
            continue;
        };
        for webhook in &bot.webhooks {
            let selected: Vec<usize> = (0..events.len())
                .filter(|&i| {
                    events[i].bot_id == bot_id && webhook.config.events.matches(events[i].status)
                })
                .collect();
            if selected.is_empty() {
                continue;
            }
            let batch = selected.iter().map(|&i| events[i].as_ref());
            // The plugin's own log lines carry the bot and webhook.
            let span = tracing::info_span!("render", bot = bot_id, webhook = %webhook.config.name);
            let started = std::time::Instant::now();
            let results = span.in_scope(|| {
                webhook
                    .plugin
                    .render_batch(&webhook.owner, batch, &webhook.settings)
            });
            let batch_len = u32::try_from(selected.len()).unwrap_or(u32::MAX);
            report.render_per_event.push((
                bot_id.to_string(),
                webhook.config.name.clone(),
                started.elapsed() / batch_len.max(1),
            ));
            for (&i, result) in selected.iter().zip(results) {
                let event = &events[i];
                let key = (bot_id.to_string(), webhook.config.name.clone());
                let base = |content_type: String, headers, body| Delivery {
                    id: new_delivery_id(),
                    bot: bot_id.to_string(),
                    webhook: webhook.config.name.clone(),
                    event_id: event.id.clone(),
                    status: event.status,
                    message_id: event.message_id.clone(),
                    recipient: event.recipient.clone(),
                    created_ms: now_ms(),
                    order: webhook.config.order,
                    content_type,
                    headers,
                    body,
                };
                // The webhook's own auth and signature headers are the
                // host's alone: a plugin setting one is refused like any
                // host-owned header.
                let result = result.and_then(|rendered| match rendered {
                    Some(r) => match r
                        .headers
                        .iter()
                        .find(|(name, _)| webhook.config.owns_header(name))
                    {
                        Some((name, _)) => Err(RenderError::ForbiddenHeader {
                            plugin: webhook.plugin.name().to_string(),
                            header: name.clone(),
                        }),
                        None => Ok(Some(r)),
                    },
                    None => Ok(None),
                });
                match result {
                    Ok(Some(rendered)) => {
                        out[i].deliveries.push(NewDelivery::Pending(base(
                            rendered.content_type,
                            rendered.headers,
                            rendered.body,
                        )));
                        report.rendered.push(key);
                    }
                    Ok(None) => report.dropped.push(key),
                    Err(error) => {
                        tracing::warn!(bot = bot_id, webhook = %webhook.config.name, event = %event.id, %error, "plugin failed; the delivery is a dead letter");
                        let reason = format!("{BORN_DEAD} {error}");
                        out[i].deliveries.push(NewDelivery::Dead(
                            base(String::new(), Vec::new(), Vec::new()),
                            reason,
                        ));
                        report.failed.push((key.0, key.1, error));
                    }
                }
            }
        }
    }
    (out, report)
}

/// What one webhook's plugin makes of one event, sent nowhere.
#[derive(Debug)]
pub enum Preview {
    /// The webhook does not take the event's status; says which it takes.
    NotSubscribed(String),
    /// The delivery ingest would queue.
    Rendered(Box<Delivery>),
    /// The plugin has nothing to send for it.
    Dropped,
    /// The plugin failed (what the dead letter's reason would say).
    Failed(String),
}

/// Renders `event` for `webhook` of `bot` exactly as ingest would (through
/// [`fan_out`]: channel name filled in, host-owned headers refused), for
/// the console's playground and `plugin-test --config`. The event's
/// `bot_id` is taken to be `bot`.
///
/// CPU-bound like [`fan_out`].
pub fn preview(
    snapshot: &Snapshot,
    bot: &str,
    webhook: &Webhook,
    mut event: StatusEvent,
) -> Preview {
    if !webhook.config.events.matches(event.status) {
        return Preview::NotSubscribed(format!(
            "webhook {:?} takes {}; a {} event does not go to it",
            webhook.config.name, webhook.config.events, event.status
        ));
    }
    event.bot_id = bot.to_string();
    let (mut events, _) = fan_out(snapshot, std::slice::from_ref(&event));
    let rendered = events.pop().and_then(|e| {
        e.deliveries
            .into_iter()
            .find(|d| d.delivery().webhook == webhook.config.name)
    });
    match rendered {
        Some(NewDelivery::Pending(delivery)) => Preview::Rendered(Box::new(delivery)),
        Some(NewDelivery::Dead(_, reason)) => Preview::Failed(reason),
        None => Preview::Dropped,
    }
}
