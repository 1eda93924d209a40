//! Wiring and supervision: open the store, start one task per enabled source, wait for a signal.

use crate::config::{Config, Dhis2Auth, Dhis2Settings, Protocol, Transport};
use crate::ingest::{self, SourceCtx};
use crate::pipeline;
use crate::record::SourceId;
use crate::store::{Store, WriterSettings};
use crate::sync::client::{Auth, ClientSettings, Dhis2Client, Secret};
use crate::tempr::{self, TemprSet};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

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
    start_with(config, store).await
}

/// Start every enabled source and the sync stages on an open store (also after a reload).
pub async fn start_with(config: &Config, store: Store) -> anyhow::Result<Running> {
    let mut running = start_sources(config, store).await?;
    start_sync(config, &running.store, &mut running.tasks)?;
    Ok(running)
}

/// Start every enabled source of `config` (not the sync stages).
pub async fn start_sources(config: &Config, store: Store) -> anyhow::Result<Running> {
    let mut tasks = JoinSet::new();
    let mut listening = Vec::new();
    for source in config.sources.iter().filter(|s| s.enabled) {
        let ctx = SourceCtx {
            id: source.id.clone(),
            protocol: source.protocol.clone(),
            limits: config.limits.clone(),
            store: store.clone(),
            tests: source.tests.clone(),
        };
        if let Protocol::Modbus(m) = &source.protocol {
            tasks.spawn(ingest::modbus::run(
                source.transport.clone(),
                m.clone(),
                ctx,
            ));
            continue;
        }
        match &source.transport {
            Transport::TcpServer { listen } => match TcpListener::bind(listen).await {
                Ok(listener) => {
                    let addr = listener.local_addr()?;
                    info!(source = %source.id, %addr, protocol = source.protocol.name(), "listening");
                    listening.push((source.id.clone(), addr));
                    tasks.spawn(serve_listener(listener, ctx));
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
                                serve_listener(l, ctx).await;
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
            Transport::Folder(settings) => {
                tasks.spawn(ingest::folder::run(settings.clone(), ctx));
            }
            Transport::Serial(settings) => {
                tasks.spawn(ingest::serial::run(settings.clone(), ctx));
            }
            Transport::Mqtt(settings) => {
                let client_id = settings.client_id(&config.gateway.name, &source.id);
                tasks.spawn(ingest::mqtt::run(ctx, (**settings).clone(), client_id));
            }
        }
    }
    Ok(Running {
        store,
        listening,
        tasks,
    })
}

/// Start the render and deliver stages of `[dhis2]` (or note that there are none).
fn start_sync(config: &Config, store: &Store, tasks: &mut JoinSet<()>) -> anyhow::Result<()> {
    if let Some(d) = &config.dhis2 {
        let (rc, client) = sync_parts(config, d)?;
        tasks.spawn(pipeline::render_loop(
            store.clone(),
            config.store.path.clone(),
            rc.clone(),
        ));
        let deliver = pipeline::Deliver::new(
            store.clone(),
            config.store.path.clone(),
            client,
            d.clone(),
            rc.clone(),
        );
        info!(url = %d.url, "DHIS2 sync enabled");
        tasks.spawn(deliver.run());
        for dest in config.destinations.iter().filter(|d| d.enabled) {
            let client = crate::sync::dest::DestClient::new(dest)
                .map_err(|e| anyhow::anyhow!("destination {}: {e}", dest.id.0))?;
            tasks.spawn(
                pipeline::dest::DestLane::new(
                    store.clone(),
                    config.store.path.clone(),
                    client,
                    dest.clone(),
                    rc.clone(),
                )
                .run(),
            );
        }
    } else {
        info!("no [dhis2] section: buffering only");
    }
    tasks.spawn(crate::store::retention::run(
        store.clone(),
        config.store.keep_delivered,
    ));
    Ok(())
}

/// A Tempr naming a destination the config lacks (or has turned off) would queue requests
/// nothing sends: the error naming both, checked at start, on reload and by the web editor.
pub fn unknown_destination(config: &Config, t: &tempr::Tempr) -> Option<String> {
    let target = t.target.as_ref()?;
    let known = config
        .destinations
        .iter()
        .any(|d| d.enabled && d.id.0 == target.destination);
    (!known).then(|| {
        format!(
            "{}: destination {:?} is not an enabled [[destinations]] entry of the config",
            t.source_file.display(),
            target.destination
        )
    })
}

/// What [`start_sync`] would refuse, without starting anything.
fn check_sync(config: &Config) -> anyhow::Result<()> {
    if let Some(d) = &config.dhis2 {
        sync_parts(config, d)?;
        for dest in config.destinations.iter().filter(|d| d.enabled) {
            crate::sync::dest::DestClient::new(dest)
                .map_err(|e| anyhow::anyhow!("destination {}: {e}", dest.id.0))?;
        }
    }
    Ok(())
}

/// Load the Temprs and build the DHIS2 client from `[dhis2]` (reads the secret now, so a missing
/// token file is reported at start-up with its path).
pub fn sync_parts(
    config: &Config,
    d: &Dhis2Settings,
) -> anyhow::Result<(pipeline::RenderCtx, Dhis2Client)> {
    let temprs = TemprSet::load_dir(&d.temprs_dir).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!(
            "Temprs in {}:\n{}",
            d.temprs_dir.display(),
            lines.join("\n")
        )
    })?;
    // A Tempr naming a destination the config lacks (or has turned off) would queue requests
    // nothing sends: refuse to start, naming both.
    let unknown: Vec<String> = temprs
        .iter()
        .filter_map(|t| unknown_destination(config, t))
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "Temprs in {}:\n{}",
            d.temprs_dir.display(),
            unknown.join("\n")
        );
    }
    let rc = pipeline::RenderCtx {
        temprs: Arc::new(temprs),
        limits: tempr::Limits::default(),
        gateway: config.gateway.name.clone(),
        org_unit: d.org_unit.clone(),
        metadata: Default::default(),
    };
    rc.load_metadata(&config.store.path);
    let auth = match &d.auth {
        Dhis2Auth::Token(t) => Auth::Token(Secret::new(t.read().map_err(anyhow::Error::msg)?)),
        Dhis2Auth::Basic { username, password } => Auth::Basic {
            username: username.clone(),
            password: Secret::new(password.read().map_err(anyhow::Error::msg)?),
        },
    };
    let extra_ca_pem = match &d.extra_ca_file {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("reading extra_ca_file {}", p.display()))?,
        ),
        None => None,
    };
    let client = Dhis2Client::new(ClientSettings {
        base_url: d.url.clone(),
        auth,
        timeout: d.timeout,
        connect_timeout: Duration::from_secs(10),
        extra_ca_pem,
        max_body_bytes: 10 << 20,
    })
    .context("building the DHIS2 client")?;
    Ok((rc, client))
}

/// Serve a bound listener with the source's protocol: HTTP has its own server, the byte-stream
/// protocols one conversation per connection.
async fn serve_listener(listener: TcpListener, ctx: SourceCtx) {
    match &ctx.protocol {
        Protocol::Http(http) => {
            let http = http.clone();
            ingest::http::serve(listener, ctx, http).await
        }
        _ => ingest::tcp::serve(listener, ctx).await,
    }
}

/// Run the config file at `path` until SIGINT or SIGTERM. With `[web]`, the web page is served
/// too, and a config or Tempr edit made there restarts the sources and sync on the new config
/// (the web server and the store stay up; connections to analyzers are re-established).
pub async fn run_from(path: std::path::PathBuf, config: Config) -> anyhow::Result<()> {
    let Some(web_settings) = config.web.clone() else {
        return run(config).await;
    };
    let store = Store::open(
        &config.store.path,
        WriterSettings {
            max_batch: config.store.max_batch,
            queue: config.store.queue,
        },
    )
    .with_context(|| format!("cannot open the store {}", config.store.path.display()))?;
    let mut running = Parts::start(&config, &store).await?;
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel(4);
    let web = crate::web::Web::new(
        store.clone(),
        path.clone(),
        config.clone(),
        reload_tx,
        sync_parts,
    )
    .await?;
    web.replace(config.clone(), running.listening());
    let listener = TcpListener::bind(web_settings.listen)
        .await
        .with_context(|| format!("web.listen: cannot listen on {}", web_settings.listen))?;
    info!(addr = %listener.local_addr()?, "web page listening");
    let server = tokio::spawn(crate::web::serve(listener, web.clone()));
    info!(gateway = %config.gateway.name, store = %config.store.path.display(), "pocketgate running");
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = reload_rx.recv() => {
                while reload_rx.try_recv().is_ok() {}
                match crate::config::load(&path) {
                    Ok(new) => match running.reload(&new, &store).await {
                        Ok(()) => web.replace(new, running.listening()),
                        // Whatever started keeps running (sources keep answering and
                        // committing); the log says what to fix.
                        Err(e) => error!(error = %format!("{e:#}"), "config reload refused; keeping the running config"),
                    },
                    Err(e) => warn!(error = %e, "config reload refused; keeping the running config"),
                }
            }
        }
    }
    info!("shutting down");
    server.abort();
    running.shutdown().await;
    Ok(())
}

/// The gateway as separately restartable parts, so a reload restarts only what changed: the
/// sync stages (always: a Tempr may have changed) and each source whose settings changed. A source
/// whose settings are the same keeps its task, its listener and its open connections.
struct Parts {
    sync: Running,
    sources: Vec<(crate::config::SourceConfig, Running)>,
    /// The `[limits]` the sources run with; a change restarts them all.
    limits: crate::config::Limits,
}

impl Parts {
    async fn start(config: &Config, store: &Store) -> anyhow::Result<Parts> {
        let mut sources = Vec::new();
        for s in config.sources.iter().filter(|s| s.enabled) {
            sources.push((s.clone(), Self::source(config, s, store).await?));
        }
        Ok(Parts {
            sync: Self::sync(config, store)?,
            sources,
            limits: config.limits.clone(),
        })
    }

    fn sync(config: &Config, store: &Store) -> anyhow::Result<Running> {
        let mut tasks = JoinSet::new();
        start_sync(config, store, &mut tasks)?;
        Ok(Running {
            store: store.clone(),
            listening: Vec::new(),
            tasks,
        })
    }

    async fn source(
        config: &Config,
        s: &crate::config::SourceConfig,
        store: &Store,
    ) -> anyhow::Result<Running> {
        let one = Config {
            sources: vec![s.clone()],
            ..config.clone()
        };
        start_sources(&one, store.clone()).await
    }

    fn listening(&self) -> Vec<(SourceId, SocketAddr)> {
        self.sources
            .iter()
            .flat_map(|(_, r)| r.listening.iter().cloned())
            .collect()
    }

    /// Apply a new config: the sync stages restart; with new `[limits]` every source restarts,
    /// otherwise only the sources that were added, removed or edited.
    async fn reload(&mut self, new: &Config, store: &Store) -> anyhow::Result<()> {
        // Everything the new sync stages need is checked before the running ones stop (a Tempr
        // naming a destination the config lacks, a missing secret file, a bad CA file): a
        // refused reload leaves the gateway as it was.
        check_sync(new)?;
        let idle = Running {
            store: store.clone(),
            listening: Vec::new(),
            tasks: JoinSet::new(),
        };
        // The old deliver stage stops before the new one starts: one sender at a time.
        std::mem::replace(&mut self.sync, idle).shutdown().await;
        self.sync = Self::sync(new, store)?;
        let wanted: Vec<&crate::config::SourceConfig> =
            new.sources.iter().filter(|s| s.enabled).collect();
        let keep_all = self.limits == new.limits;
        self.limits = new.limits.clone();
        let (kept, stop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sources)
            .into_iter()
            .partition(|(c, _)| keep_all && wanted.contains(&c));
        // Stop first, so a source that moved keeps its port free for its new task.
        let stopped = stop.len();
        for (_, r) in stop {
            r.shutdown().await;
        }
        let unchanged = kept.len();
        self.sources = kept;
        for s in wanted {
            if !self.sources.iter().any(|(c, _)| c == s) {
                self.sources
                    .push((s.clone(), Self::source(new, s, store).await?));
            }
        }
        info!(
            unchanged,
            stopped,
            started = self.sources.len() - unchanged,
            "config reloaded; unchanged sources keep their connections"
        );
        Ok(())
    }

    async fn shutdown(self) {
        self.sync.shutdown().await;
        for (_, r) in self.sources {
            r.shutdown().await;
        }
    }
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
