//! Assembling a running dispatcher from a config: plugin host, routing
//! table, queue, delivery workers and the HTTP server.
//!
//! [`start`] is what `statushook run` does, and what the end-to-end tests
//! call in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, FileChange, Fragments, QueueBackend, QueueConfig, Reread};
use crate::deliver::Deliverer;
use crate::deliver::client::ClientError;
use crate::deliver::endpoint::{BreakerPolicy, Endpoints};
use crate::ingest::router::Door;
use crate::ingest::{Ingest, server};
use crate::metrics::Metrics;
use crate::plugin::{HostError, HostOptions, PluginHost};
use crate::queue::{Clock, EmbeddedQueue, History, Queue, QueueError, RedisQueue};
use crate::reload::{self, ComposeError, Composed, Reloader};
use crate::route::Snapshot;

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The WebAssembly runtime could not be set up.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The routing table could not be built: a plugin the config names
    /// does not load, or the main file clashes with an included one.
    #[error("cannot build the routing table: {0}")]
    Routes(#[from] ComposeError),
    /// The queue could not be opened.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A start-up step on a blocking thread panicked.
    #[error("{step} stopped unexpectedly: {source}")]
    Panicked {
        /// What was being done.
        step: &'static str,
        /// The panic, as tokio reports it.
        source: tokio::task::JoinError,
    },
}

/// A running dispatcher: stop it with [`Running::shutdown`].
pub struct Running {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    routes: Arc<ArcSwap<Snapshot>>,
    queue: Arc<dyn Queue>,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    deliverer: JoinHandle<()>,
    reload: JoinHandle<()>,
}

/// Opens the configured queue backend.
///
/// # Errors
///
/// [`QueueError::Open`] when the store cannot be opened.
pub fn open_queue(config: &QueueConfig, history: History) -> Result<Arc<dyn Queue>, QueueError> {
    match &config.backend {
        QueueBackend::Redis(options) => Ok(Arc::new(
            RedisQueue::open(options.clone(), Clock::system())?.with_history(history),
        )),
        // Opening may repair the file after a crash: blocking, at start-up only.
        QueueBackend::Embedded { path } => {
            Ok(Arc::new(EmbeddedQueue::open(path)?.with_history(history)))
        }
    }
}

/// How often the delivery log is swept for bots that stopped sending.
const LOG_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Stops the start when the queue answers that its stored layout is not the
/// configured one (another shard count): a dispatcher that failed every
/// request instead would be harder to diagnose. A queue that cannot be
/// reached yet does not stop it; the connection is retried on use.
async fn refuse_a_mismatched_queue(queue: &dyn Queue) -> Result<(), StartError> {
    match tokio::time::timeout(Duration::from_secs(5), queue.ping()).await {
        Ok(Err(error @ QueueError::Open { .. })) => Err(error.into()),
        _ => Ok(()),
    }
}

/// Starts everything `config` describes and returns once the server listens.
///
/// # Errors
///
/// [`StartError`] naming what could not be set up.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let mut options = HostOptions {
        limits: config.plugins.limits.clone(),
        ..HostOptions::default()
    };
    if let Some(dir) = &config.plugins.cache_dir {
        options.cache_dir = Some(dir.clone());
    }
    // Both block (a redb repair after a crash; the engine's memory pool), so
    // they run off the async threads.
    let (queue_config, history) = (config.queue.clone(), config.history);
    let (host, queue) = tokio::task::spawn_blocking(move || {
        Ok::<_, StartError>((
            PluginHost::new(options)?,
            open_queue(&queue_config, history)?,
        ))
    })
    .await
    .map_err(|source| StartError::Panicked {
        step: "opening the queue and the plugin host",
        source,
    })??;
    refuse_a_mismatched_queue(&*queue).await?;
    let listen = config.server.listen;
    let admin_listen = config.server.admin_listen;
    let limits = server::Limits::of(&config.server);
    let delivery = config.delivery.clone();
    let build_host = host.clone();
    let (composed, fragments) = tokio::task::spawn_blocking(move || {
        let mut fragments = Fragments::new();
        // The first table: the main config and every file it includes.
        reload::compose(config, &mut fragments, Reread::All, &build_host, None)
            .map(|c| (c, fragments))
    })
    .await
    .map_err(|source| StartError::Panicked {
        step: "loading the plugins",
        source,
    })??;
    let Composed {
        snapshot,
        files,
        problems,
        ..
    } = composed;
    let routes = Arc::new(ArcSwap::from_pointee(snapshot));
    let metrics = Arc::new(Metrics::new());
    let main = routes.load().config.path.clone();
    for problem in &problems {
        tracing::warn!("{problem}");
    }
    let client = Arc::new(ArcSwap::from_pointee(crate::deliver::client::build(
        delivery.allow_private_networks,
    )?));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    // The operations listener, when configured: bound now too, so a port
    // taken fails the start rather than a later request.
    let admin = match admin_listen {
        None => None,
        Some(wanted) => {
            let bind_error = |source| StartError::Bind {
                addr: wanted,
                source,
            };
            let listener = TcpListener::bind(wanted).await.map_err(bind_error)?;
            let addr = listener.local_addr().map_err(bind_error)?;
            Some((listener, addr))
        }
    };
    let admin_addr = admin.as_ref().map(|(_, addr)| *addr);

    let (shutdown, stop) = watch::channel(false);
    let grace = delivery.timeout + Duration::from_secs(5);
    let endpoints = Arc::new(Endpoints::new(
        delivery.max_in_flight_per_endpoint,
        BreakerPolicy::default(),
    ));
    let deliverer = Arc::new(Deliverer::new(
        Arc::clone(&queue),
        Arc::clone(&routes),
        Arc::clone(&client),
        Arc::clone(&endpoints),
        Arc::clone(&metrics),
    ));
    let ingest = Arc::new(Ingest {
        routes: Arc::clone(&routes),
        queue: Arc::clone(&queue),
        metrics: Arc::clone(&metrics),
        rate_limits: crate::rate::Buckets::default(),
        endpoints: Arc::clone(&endpoints),
        host: host.clone(),
        deliverer: Arc::clone(&deliverer),
    });
    let door = if admin.is_some() {
        Door::Ingest
    } else {
        Door::All
    };
    let mut servers = vec![tokio::spawn(server::serve(
        listener,
        Arc::clone(&ingest),
        stop.clone(),
        Duration::from_secs(10),
        limits,
        door,
    ))];
    if let Some((listener, _)) = admin {
        servers.push(tokio::spawn(server::serve(
            listener,
            ingest,
            stop.clone(),
            Duration::from_secs(10),
            limits,
            Door::Operations,
        )));
    }
    let reloader = Reloader::new(
        main,
        Arc::clone(&routes),
        host.clone(),
        Arc::clone(&metrics),
        Arc::clone(&client),
        fragments,
    );
    // At start only refusals are news; 1,000 "applied" lines would bury them.
    let refused: Vec<_> = files
        .into_iter()
        .filter(|f| matches!(f.change, FileChange::Refused { .. }))
        .collect();
    reloader.report(&refused);
    // Watching starts before `start` returns, so no change made after it is missed.
    let watch = {
        let reloader = Arc::clone(&reloader);
        tokio::task::spawn_blocking(move || reload::watch::Watch::start(reloader))
            .await
            .map_err(|source| StartError::Panicked {
                step: "watching the config files",
                source,
            })?
    };
    let reload = tokio::spawn(watch.run(stop.clone()));
    // The console's rate series: a sample of every bot's totals now and then.
    tokio::spawn({
        let (metrics, mut stop) = (Arc::clone(&metrics), stop.clone());
        async move {
            let mut every = tokio::time::interval(crate::activity::SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => metrics.activity.sample(),
                    _ = stop.changed() => return,
                }
            }
        }
    });
    // The delivery log's sweep: enqueues trim their own bots' logs; this
    // reaches bots that stopped sending, so nothing outlives the retention
    // by more than a minute.
    tokio::spawn({
        let (queue, routes, mut stop) = (Arc::clone(&queue), Arc::clone(&routes), stop.clone());
        async move {
            let mut every = tokio::time::interval(LOG_SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let snapshot = routes.load_full();
                        let bots: Vec<&str> = snapshot.config.bots.iter().map(|b| b.id.as_str()).collect();
                        if let Err(error) = queue.sweep_log(&bots).await {
                            tracing::warn!(%error, "cannot trim the delivery log now; the next sweep tries again");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        }
    });
    let deliverer = tokio::spawn(deliverer.run(stop, grace));
    Ok(Running {
        addr,
        admin_addr,
        routes,
        queue,
        metrics,
        shutdown,
        servers,
        deliverer,
        reload,
    })
}

impl Running {
    /// The address the HTTP server listens on (the real port when the config
    /// asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the operations listener (`[server] admin_listen`),
    /// when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The routing table serving now (a reload swaps in a new one).
    pub fn routes(&self) -> Arc<Snapshot> {
        self.routes.load_full()
    }

    /// The delivery queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// The dispatcher's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting requests and claiming work, lets in-flight work finish
    /// (bounded), and returns when everything has stopped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        let _ = self.deliverer.await;
        let _ = self.reload.await;
    }
}
