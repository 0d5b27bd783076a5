//! The delivery loop: claim due deliveries, send each, then ack, retry or
//! dead-letter it, in one atomic queue step per outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::attempt::{self, Answer};
use super::backlog::{Backlog, Parked};
use super::decide::{Step, decide};
use super::endpoint::{Busy, Endpoints, InFlight};
use super::handoff::{self, Inbox, Reserved};
use crate::config::DeliveryConfig;
use crate::metrics::{self, Metrics, WebhookLabels};
use crate::queue::{
    Attempt, AttemptOutcome, Claimed, Handoff, NewDelivery, NewEvent, Queue, now_ms,
};
use crate::route::Snapshot;

/// Claim at most this many jobs per queue round trip.
const CLAIM_BATCH: usize = 64;
/// The longest a worker with nothing due sleeps before looking again.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The longest a lane is held because its endpoint is at its cap with a
/// full backlog. Short: a hold outlasting a brief stall of the endpoint
/// would delay the whole lane, and an endpoint that stopped answering soon
/// has its breaker opened, which holds the lane for the open period.
const MAX_BUSY_HOLD: Duration = Duration::from_millis(100);

/// Everything a delivery attempt needs, shared by all of them.
pub struct Deliverer {
    /// The queue to claim from.
    pub(crate) queue: Arc<dyn Queue>,
    /// The live routing table; each attempt reads the current one.
    pub(crate) routes: Arc<ArcSwap<Snapshot>>,
    /// The shared HTTP client; replaced when a reload changes
    /// `allow_private_networks` (its resolver enforces that setting).
    pub(crate) client: Arc<ArcSwap<reqwest::Client>>,
    /// Per-endpoint in-flight caps and circuit breakers.
    pub(crate) endpoints: Arc<Endpoints>,
    /// Metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Jobs waiting here for an endpoint at its in-flight cap.
    backlog: Backlog,
    /// Rung when this deliverer puts a job back to be claimed again (a
    /// retry, a postponement): the sleeping claim loop's idea of when the
    /// next job is due came from before it, so it must look again.
    put_back: tokio::sync::Notify,
    /// Each webhook's `rate_limit` bucket, by lane.
    rate_limits: crate::rate::Buckets,
    /// The in-flight cap, and jobs handed off by ingest.
    inbox: Inbox,
}

/// How one job's turn in a task ended.
enum Ended {
    /// A send to this endpoint finished: its slot can go to a parked job.
    Sent(String),
    /// The job waits in the backlog for this endpoint.
    Parked(String),
    /// Anything else (dead letter, postponed).
    Other,
}

impl Deliverer {
    /// A deliverer; its backlog holds up to four times each endpoint's
    /// in-flight cap.
    pub fn new(
        queue: Arc<dyn Queue>,
        routes: Arc<ArcSwap<Snapshot>>,
        client: Arc<ArcSwap<reqwest::Client>>,
        endpoints: Arc<Endpoints>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (per_endpoint, max_in_flight) = {
            let delivery = &routes.load().config.delivery;
            (
                delivery.max_in_flight_per_endpoint.max(1) * 4,
                delivery.max_in_flight,
            )
        };
        Deliverer {
            queue,
            routes,
            client,
            endpoints,
            metrics,
            backlog: Backlog::new(per_endpoint),
            put_back: tokio::sync::Notify::new(),
            rate_limits: crate::rate::Buckets::default(),
            inbox: Inbox::new(max_in_flight),
        }
    }

    /// What an enqueue of `events` may lease straight to this deliverer (see
    /// [`Handoff`]), with the in-flight room it needs taken now so the cap
    /// holds (released when dropped, as far as not used): the claim's own
    /// lease and per-lane share, and nothing unless every endpoint the
    /// deliveries go to can take its share now. (A job handed to a busy
    /// endpoint would wait in the backlog or be put back, where a later
    /// claim does better: under load the deliveries wait their turn in the
    /// queue, and no room is reserved for nothing.)
    pub(crate) fn reserve(&self, events: &[NewEvent]) -> (Reserved, Handoff) {
        let none = || (Reserved::default(), Handoff::NONE);
        let routes = self.routes.load();
        let mut pending = 0;
        let mut per_endpoint: Vec<(&str, usize)> = Vec::new();
        for new in events.iter().flat_map(|e| &e.deliveries) {
            let NewDelivery::Pending(delivery) = new else {
                continue;
            };
            let Some(webhook) = routes.webhook(&delivery.bot, &delivery.webhook) else {
                return none();
            };
            pending += 1;
            match per_endpoint
                .iter_mut()
                .find(|(e, _)| *e == webhook.endpoint)
            {
                Some((_, n)) => *n += 1,
                None => per_endpoint.push((&webhook.endpoint, 1)),
            }
        }
        let now = Instant::now();
        let per_lane = routes.config.delivery.max_in_flight_per_endpoint.max(1);
        let all_have_room = per_endpoint.iter().all(|(endpoint, n)| {
            !self.backlog.has_waiting(endpoint)
                && self.endpoints.has_room(endpoint, (*n).min(per_lane), now)
        });
        if pending == 0 || !all_have_room {
            return none();
        }
        let reserved = self.inbox.reserve(pending);
        let handoff = match reserved.room() {
            0 => Handoff::NONE,
            max => Handoff {
                max,
                per_lane,
                lease: lease_for(&routes),
            },
        };
        (reserved, handoff)
    }

    /// Starts `jobs`, leased to this dispatcher by the enqueue that wrote
    /// them (at most what `reserved` has room for), as if claimed.
    pub(crate) fn take_over(&self, jobs: Vec<Claimed>, reserved: Reserved) {
        self.inbox.hand_over(jobs, reserved);
    }

    /// Runs until `shutdown` turns true, then lets in-flight sends finish for
    /// up to `grace`. Sends still running after that are abandoned; their
    /// leases expire and another worker (or the next start) delivers them
    /// again, with the same `webhook-id`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let max_in_flight = self.routes.load().config.delivery.max_in_flight.max(1);
        // (The cap itself is the inbox's permits, sized from the same setting.)
        let permits = Arc::clone(&self.inbox.permits);
        let Some(mut handed) = self.inbox.take_receiver() else {
            tracing::error!("the delivery loop was started twice; the second one stops");
            return;
        };
        let mut tasks = JoinSet::new();
        let mut last_error_log: Option<Instant> = None;
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            while let Ok((job, permit)) = handed.try_recv() {
                self.start(&mut tasks, job, permit);
            }
            // Claim only what can start now, so the in-flight cap holds, and
            // not while the backlog is as large as that cap.
            let free = permits.available_permits();
            if self.backlog.len() >= max_in_flight {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    Some((job, permit)) = handed.recv() => self.start(&mut tasks, job, permit),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if free == 0 {
                // Running jobs and room reserved for hand-offs hold every
                // permit: wait for one to come back.
                tokio::select! {
                    permit = permits.acquire() => drop(permit),
                    Some((job, permit)) = handed.recv() => self.start(&mut tasks, job, permit),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let (lease, per_lane) = {
                let routes = self.routes.load();
                (
                    lease_for(&routes),
                    routes.config.delivery.max_in_flight_per_endpoint.max(1),
                )
            };
            let asked = free.min(CLAIM_BATCH);
            match self.queue.claim(asked, per_lane, lease).await {
                Ok(claim) => {
                    // Fewer than asked: nothing more is due now, so sleep
                    // (until the next due time or a wake-up) instead of
                    // asking again; at a moderate rate that second claim
                    // found nothing for almost every event.
                    for (bot, webhook) in &claim.suppressed {
                        tracing::debug!(
                            bot,
                            webhook,
                            "a regression of a message's status was suppressed"
                        );
                        self.metrics
                            .deliveries_suppressed
                            .get_or_create(&metrics::webhook(bot, webhook))
                            .inc();
                    }
                    let drained = claim.jobs.len() < asked;
                    for job in claim.jobs {
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            // Room was reserved for a hand-off meanwhile
                            // (rare): the job goes back, due now.
                            self.return_unstarted(job).await;
                            continue;
                        };
                        self.start(&mut tasks, job, permit);
                    }
                    if drained {
                        self.idle(claim.next_due_ms, &mut shutdown, &mut handed, &mut tasks)
                            .await;
                    }
                }
                Err(error) => {
                    if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::error!(%error, "cannot claim deliveries; retrying");
                        last_error_log = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        // Jobs handed off but not started yet go out with the rest.
        handed.close();
        while let Ok((job, permit)) = handed.try_recv() {
            self.start(&mut tasks, job, permit);
        }
        tracing::info!(
            in_flight = tasks.len(),
            "delivery stopping; letting in-flight sends finish"
        );
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = tasks.len(),
                "sends still running at the end of the grace period; their leases will expire and they will be retried"
            );
            tasks.abort_all();
        }
        // Jobs still parked go back to the queue now, not when their leases end.
        for parked in self.backlog.drain() {
            self.step(
                "return",
                self.queue.retry(&parked.job.lease, None, now_ms()).await,
            );
        }
    }

    /// Starts work on `job`, holding `permit` until its turn ends.
    fn start(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        job: Claimed,
        permit: OwnedSemaphorePermit,
    ) {
        let this = Arc::clone(self);
        tasks.spawn(async move {
            this.work(job).await;
            drop(permit);
        });
    }

    /// Puts a claimed job that found no room back in the queue, due now.
    async fn return_unstarted(&self, job: Claimed) {
        self.step("return", self.queue.retry(&job.lease, None, now_ms()).await);
        self.put_back.notify_one();
    }

    /// Runs `job`, then, while sends keep finishing, the jobs parked for the
    /// same endpoint: one task and one permit serve them in turn.
    async fn work(&self, job: Claimed) {
        let mut next = Some(Parked {
            job,
            claimed_at: Instant::now(),
        });
        while let Some(Parked { job, claimed_at }) = next.take() {
            let span = tracing::info_span!("delivery", bot = %job.delivery.bot, webhook = %job.delivery.webhook, delivery = %job.delivery.id, attempt = job.attempts + 1);
            match self.attempt(job, claimed_at).instrument(span).await {
                Ended::Sent(endpoint) => next = self.backlog.take(&endpoint),
                // A send there may have finished while this job was being
                // parked; if a slot is free now, serve the backlog.
                Ended::Parked(endpoint) => {
                    if let Ok(slot) = self.endpoints.try_start(&endpoint, Instant::now()) {
                        drop(slot);
                        next = self.backlog.take(&endpoint);
                    }
                }
                Ended::Other => {}
            }
        }
    }

    /// Sleeps until `next_due_ms` (what the last claim said), new work
    /// arrives, or `IDLE_POLL`; starts jobs handed off meanwhile without
    /// waking up to claim (they were leased by their enqueue).
    async fn idle(
        self: &Arc<Self>,
        next_due_ms: Option<u64>,
        shutdown: &mut watch::Receiver<bool>,
        handed: &mut UnboundedReceiver<handoff::Handed>,
        tasks: &mut JoinSet<()>,
    ) {
        let wait = next_due_ms.map_or(IDLE_POLL, |due| {
            Duration::from_millis(due.saturating_sub(now_ms())).min(IDLE_POLL)
        });
        if wait.is_zero() {
            return;
        }
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return,
                _ = self.queue.wait_for_work(wait) => return,
                _ = self.put_back.notified() => return,
                _ = shutdown.changed() => return,
                Some((job, permit)) = handed.recv() => {
                    self.start(tasks, job, permit);
                    // Reap what finished, as the loop's top would.
                    while tasks.try_join_next().is_some() {}
                }
            }
        }
    }

    /// One attempt of one claimed delivery, ending in exactly one queue step
    /// (or parked, to wait for a busy endpoint).
    async fn attempt(&self, job: Claimed, claimed_at: Instant) -> Ended {
        let routes = self.routes.load_full();
        let Some(webhook) = routes.webhook(&job.delivery.bot, &job.delivery.webhook) else {
            tracing::warn!("webhook no longer in config; dead-lettering");
            self.dead(&job, None, "webhook removed", "webhook_removed")
                .await;
            return Ended::Other;
        };
        let settings = &routes.config.delivery;
        // A job that waited in the backlog must still finish within its lease.
        if claimed_at.elapsed() + settings.timeout + Duration::from_secs(5) > lease_for(&routes) {
            self.postpone(&job, Duration::ZERO, "lease_budget").await;
            return Ended::Other;
        }
        // Over the partner's rate: the whole lane waits until a send is due
        // again; nothing is attempted, so no attempt is spent.
        if let Some(rate) = webhook.config.rate_limit
            && let Err(wait) = self
                .rate_limits
                .take(&job.delivery.lane(), rate, 1, Instant::now())
        {
            self.set_aside(&job, wait, "rate_limited").await;
            return Ended::Other;
        }
        let (job, in_flight) = match self
            .admit(job, claimed_at, &webhook.endpoint, settings)
            .await
        {
            Ok(admitted) => admitted,
            Err(ended) => return ended,
        };

        let started = Instant::now();
        let started_ms = now_ms();
        let attempt::Sent { answer, response } = attempt::send(
            &self.client.load(),
            &webhook.config,
            &job.delivery,
            settings.timeout,
            settings.allow_private_networks,
        )
        .await;
        let took = started.elapsed();
        let labels = metrics::webhook(&job.delivery.bot, &job.delivery.webhook);
        self.metrics
            .attempt_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.backlog
            .record_latency(&webhook.endpoint, took.as_secs_f64() * 1000.0);
        log_answer(&answer, took);

        let decision = decide(
            &answer,
            job.attempts + 1,
            &settings.retry_schedule,
            &mut fastrand::Rng::new(),
        );
        if decision.endpoint_down {
            in_flight.failure(Instant::now());
        } else {
            in_flight.success(Instant::now());
        }
        let record = Attempt {
            at_ms: started_ms,
            duration_ms: millis(took),
            outcome: match answer {
                Answer::Delivered(status) | Answer::Rejected { status, .. } => {
                    AttemptOutcome::Status(status)
                }
                Answer::Gone => AttemptOutcome::Status(410),
                Answer::Failed(error) | Answer::Refused(error) => AttemptOutcome::Error(error),
            },
            response,
        };
        self.settle(&job, &labels, &record, decision.step).await;
        Ended::Sent(webhook.endpoint.clone())
    }

    /// Takes one of the endpoint's in-flight slots for `job`; or, when the
    /// endpoint cannot take it now, parks it in the backlog or sets it aside,
    /// and says how its turn ended.
    async fn admit(
        &self,
        job: Claimed,
        claimed_at: Instant,
        endpoint: &str,
        settings: &DeliveryConfig,
    ) -> Result<(Claimed, InFlight), Ended> {
        let now = Instant::now();
        match self.endpoints.try_start(endpoint, now) {
            Ok(slot) => Ok((job, slot)),
            Err(Busy::Full) => match self.backlog.park(endpoint, Parked { job, claimed_at }) {
                Ok(()) => Err(Ended::Parked(endpoint.to_string())),
                Err(parked) => {
                    let hold = self.backlog.overflow_hold(
                        endpoint,
                        settings.max_in_flight_per_endpoint,
                        settings.timeout.min(MAX_BUSY_HOLD),
                        now,
                    );
                    self.set_aside(&parked.job, hold, "endpoint_busy").await;
                    Err(Ended::Other)
                }
            },
            Err(Busy::Open { until }) => {
                // Wait out the open period, or a probe's whole timeout.
                let wait = until.saturating_duration_since(now).max(settings.timeout);
                self.set_aside(&job, wait, "breaker_open").await;
                // Jobs parked for this endpoint would wait for a send that
                // will not come while the breaker is open: back to the
                // queue with the rest of their lane, now, not when their
                // leases run out.
                for parked in self.backlog.take_all(endpoint) {
                    self.postpone(&parked.job, Duration::ZERO, "breaker_open")
                        .await;
                }
                Err(Ended::Other)
            }
        }
    }

    /// Carries out `step` for an attempted job: its metrics and its one
    /// queue write.
    async fn settle(&self, job: &Claimed, labels: &WebhookLabels, record: &Attempt, step: Step) {
        match step {
            Step::Ack => {
                self.metrics
                    .deliveries_delivered
                    .get_or_create(labels)
                    .inc();
                self.metrics
                    .activity
                    .delivered(&job.delivery.bot, &job.delivery.webhook);
                // Nothing waits on an unordered delivery's ack: the queue may
                // write it with its next write.
                let acked = if job.delivery.ordered_message().is_some() {
                    self.queue.ack(&job.lease, Some(record)).await
                } else {
                    self.queue.ack_unordered(&job.lease, Some(record)).await
                };
                self.step("ack", acked);
            }
            Step::Retry { wait } => {
                tracing::debug!(wait_ms = millis(wait), "retry scheduled");
                self.metrics.deliveries_failed.get_or_create(labels).inc();
                self.metrics.deliveries_retried.get_or_create(labels).inc();
                self.failed(job, record);
                self.step(
                    "retry",
                    self.queue
                        .retry(&job.lease, Some(record), now_ms() + millis(wait))
                        .await,
                );
                self.put_back.notify_one();
            }
            Step::DeadLetter { reason, code } => {
                self.metrics.deliveries_failed.get_or_create(labels).inc();
                self.failed(job, record);
                self.dead(job, Some(record), &reason, code).await;
            }
        }
    }

    /// Puts a due job back without an attempt and holds its whole lane for
    /// `wait`: one queue write keeps the webhook's other jobs from being
    /// claimed (and put back in turn) while its endpoint cannot take them.
    async fn set_aside(&self, job: &Claimed, wait: Duration, why: &str) {
        let d = &job.delivery;
        let until = now_ms() + millis(wait);
        let back_at = match self.queue.hold(&d.bot, &d.webhook, until).await {
            Ok(()) => Duration::ZERO,
            Err(error) => {
                tracing::warn!(%error, "cannot hold the webhook's lane; postponing this delivery alone");
                wait
            }
        };
        self.postpone(job, back_at, why).await;
    }

    /// Puts a due job back without an attempt, due after `wait`.
    async fn postpone(&self, job: &Claimed, wait: Duration, why: &str) {
        let d = &job.delivery;
        self.metrics
            .deliveries_postponed
            .get_or_create(&metrics::webhook_reason(&d.bot, &d.webhook, why))
            .inc();
        self.step(
            "postpone",
            self.queue
                .retry(&job.lease, None, now_ms() + millis(wait))
                .await,
        );
        self.put_back.notify_one();
    }

    /// Notes a failed attempt where the console shows a webhook's health.
    fn failed(&self, job: &Claimed, record: &Attempt) {
        let error = match &record.outcome {
            AttemptOutcome::Status(status) => format!("HTTP {status}"),
            AttemptOutcome::Error(error) => error.clone(),
        };
        let d = &job.delivery;
        self.metrics.activity.failed(&d.bot, &d.webhook, &error);
    }

    async fn dead(&self, job: &Claimed, attempt: Option<&Attempt>, reason: &str, code: &str) {
        let d = &job.delivery;
        self.metrics
            .deliveries_dead_lettered
            .get_or_create(&metrics::webhook_reason(&d.bot, &d.webhook, code))
            .inc();
        self.metrics.activity.dead(&d.bot, &d.webhook);
        tracing::warn!(reason, "dead letter");
        self.step(
            "dead-letter",
            self.queue.dead_letter(&job.lease, attempt, reason).await,
        );
    }

    /// Logs a queue step that did not take: the lease was lost (another
    /// worker has the job) or the queue is down (the lease will expire and
    /// the job is retried, with the same `webhook-id`).
    fn step(&self, what: &str, result: Result<bool, crate::queue::QueueError>) {
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                step = what,
                "lease lost before the queue step; another worker owns the delivery now"
            ),
            Err(error) => {
                tracing::error!(step = what, %error, "queue step failed; the delivery will be retried when its lease expires")
            }
        }
    }
}

/// A lease comfortably longer than one attempt can take, so a slow but live
/// send is never handed to a second worker.
pub fn lease_for(routes: &Snapshot) -> Duration {
    routes.config.delivery.timeout * 2 + Duration::from_secs(10)
}

/// One log line per answer: debug when delivered, info otherwise.
fn log_answer(answer: &Answer, took: Duration) {
    let took_ms = millis(took);
    match answer {
        Answer::Delivered(status) => tracing::debug!(status, took_ms, "delivered"),
        Answer::Gone => tracing::info!(took_ms, "receiver answered 410 Gone; not retrying"),
        Answer::Rejected { status, .. } => {
            tracing::info!(status, took_ms, "receiver refused the delivery")
        }
        Answer::Failed(error) => tracing::info!(%error, took_ms, "delivery attempt failed"),
        Answer::Refused(error) => {
            tracing::warn!(%error, "delivery refused: the URL is not allowed")
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
