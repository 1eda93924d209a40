//! Wiring and supervision: open the store, start one task per enabled source, wait for a signal.

use crate::config::{Config, Protocol, Transport};
use crate::ingest::{self, SourceCtx};
use crate::record::SourceId;
use crate::store::{Store, WriterSettings};
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// The running gateway: its sources' tasks and the addresses its TCP servers are bound to.
pub struct Running {
    pub store: Store,
    /// TCP server sources that could bind at start-up (others keep retrying in the background).
    pub listening: Vec<(SourceId, SocketAddr)>,
    tasks: JoinSet<()>,
}

impl Running {
    pub fn addr_of(&self, id: &str) -> Option<SocketAddr> {
        self.listening
            .iter()
            .find(|(s, _)| s.0 == id)
            .map(|(_, a)| *a)
    }

    /// Stop every source task (the store writer finishes what it holds when the last handle drops).
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Open the store and start every enabled source.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let store = Store::open(
        &config.store.path,
        WriterSettings {
            max_batch: config.store.max_batch,
            queue: config.store.queue,
        },
    )
    .with_context(|| format!("cannot open the store {}", config.store.path.display()))?;
    let mut tasks = JoinSet::new();
    let mut listening = Vec::new();
    for source in config.sources.iter().filter(|s| s.enabled) {
        let Protocol::Astm(astm) = &source.protocol;
        let ctx = SourceCtx {
            id: source.id.clone(),
            astm: astm.clone(),
            limits: config.limits.clone(),
            store: store.clone(),
        };
        match &source.transport {
            Transport::TcpServer { listen } => match TcpListener::bind(listen).await {
                Ok(listener) => {
                    let addr = listener.local_addr()?;
                    info!(source = %source.id, %addr, "listening for analyzers");
                    listening.push((source.id.clone(), addr));
                    tasks.spawn(ingest::tcp::serve(listener, ctx));
                }
                Err(e) => {
                    // One bad source never stops another: keep trying to bind in the background.
                    warn!(source = %source.id, addr = %listen, error = %e, "cannot listen yet; retrying");
                    let listen = *listen;
                    tasks.spawn(async move {
                        let mut backoff =
                            ingest::Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
                        loop {
                            tokio::time::sleep(backoff.next_delay()).await;
                            if let Ok(l) = TcpListener::bind(listen).await {
                                info!(source = %ctx.id, addr = %listen, "listening for analyzers");
                                ingest::tcp::serve(l, ctx).await;
                                return;
                            }
                        }
                    });
                }
            },
            Transport::TcpClient {
                connect,
                backoff_min,
                backoff_max,
            } => {
                tasks.spawn(ingest::tcp::dial(*connect, *backoff_min, *backoff_max, ctx));
            }
            Transport::Serial(settings) => {
                tasks.spawn(ingest::serial::run(settings.clone(), ctx));
            }
        }
    }
    Ok(Running {
        store,
        listening,
        tasks,
    })
}

/// Run until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = start(&config).await?;
    info!(
        gateway = %config.gateway.name,
        store = %config.store.path.display(),
        sources = config.sources.iter().filter(|s| s.enabled).count(),
        "pocketgate running"
    );
    shutdown_signal().await;
    info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
