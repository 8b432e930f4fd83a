//! The long-running exporter: configuration validated before any port is bound, storage and
//! state restored, scheduler, watcher, supervisor and HTTP started, reload on SIGHUP or
//! `POST /-/reload` (both through the supervisor), graceful shutdown on SIGTERM/SIGINT
//! (running terraform interrupted so that locks are released).
//!
//! [`Server::bind`] binds first and tells its address ([`Server::local_addr`]), so that a
//! caller (a test) may listen on port 0 and learn the port before [`Server::run`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::cancel::CancellationToken;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::changes::Changes;
use crate::config::{Config, ConfigError};
use crate::http::App;
use crate::scheduler::{Scheduler, TerraformScanner};
use crate::state::State;
use crate::store::Storage;
use crate::supervisor::{Loader, Supervisor};
use crate::watcher::Watcher;
use crate::webconfig::{WebConfig, WebConfigError};

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    WebConfig(#[from] WebConfigError),
    #[error("cannot read the configuration: {0}")]
    Start(String),
}

/// The web configuration the configuration names (none: plain HTTP, no authentication).
pub fn load_web(config: &Config) -> Result<WebConfig, WebConfigError> {
    match &config.web.config_file {
        Some(file) => WebConfig::load(file),
        None => Ok(WebConfig::none()),
    }
}

/// What the command line gives the exporter.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config_path: PathBuf,
    /// `--web.listen-address` (repeatable), over the file's `web.listen_address`.
    pub listen: Vec<String>,
    /// `--web.systemd-socket`: listen on the sockets systemd passes (`LISTEN_FDS`) instead.
    pub systemd_socket: bool,
    /// `--web.config.file`, over the file's `web.config_file`.
    pub web_config: Option<PathBuf>,
    /// `--shard` and `--total-shards`, over the file's `[sharding]`.
    pub shard: Option<String>,
    pub total_shards: Option<u32>,
    pub telemetry: crate::http::Telemetry,
}

impl Options {
    /// Reads and validates the configuration with the command line's overrides (blocking).
    fn load(&self, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::load(path)?;
        if let Some(file) = &self.web_config {
            config.web.config_file = Some(file.clone());
        }
        if let Some(first) = self.listen_addresses(path)?.first() {
            config.web.listen_address = *first;
        }
        self.shard(path, &mut config)?;
        Ok(config)
    }

    /// The shard from the flags over the file's, and only its environments kept.
    fn shard(&self, path: &Path, config: &mut Config) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: path.to_owned(),
            key: key.into(),
            message,
        };
        if self.shard.is_some() || self.total_shards.is_some() {
            let total = self.total_shards.unwrap_or(config.sharding.total);
            let shard = self
                .shard
                .clone()
                .unwrap_or_else(|| config.sharding.ordinal.to_string());
            config.sharding =
                crate::shard::Shard::resolve(&shard, total, crate::shard::host_name().as_deref())
                    .map_err(|m| invalid("--shard", m))?;
        }
        let shard = config.sharding;
        let (mine, elsewhere) = std::mem::take(&mut config.environments)
            .into_iter()
            .partition(|(name, _)| shard.owns(name));
        config.environments = mine;
        config.elsewhere = elsewhere;
        Ok(())
    }

    /// The `--web.listen-address` flags, parsed.
    fn listen_addresses(&self, path: &Path) -> Result<Vec<SocketAddr>, ConfigError> {
        self.listen
            .iter()
            .map(|address| {
                address.parse().map_err(|_| ConfigError::Invalid {
                    file: path.to_owned(),
                    key: "--web.listen-address".into(),
                    message: format!("{address:?} is not an address like \"0.0.0.0:9847\""),
                })
            })
            .collect()
    }

    /// The same, for a reload: both files, errors as the message.
    fn loader(&self) -> Loader {
        let options = self.clone();
        Arc::new(move |path| {
            let config = options.load(path).map_err(|e| e.to_string())?;
            let web = load_web(&config).map_err(|e| e.to_string())?;
            Ok((config, web))
        })
    }
}

/// A configured exporter with its port bound, not running yet.
pub struct Server {
    options: Options,
    config: Config,
    web: WebConfig,
    /// The first is the address the exporter says it listens on.
    listeners: Vec<TcpListener>,
    /// SIGHUP reloads, SIGTERM/SIGINT stop: the process's signals are this exporter's
    /// (off for an exporter embedded in another program, a test).
    signals: bool,
}

/// The process's signals, taken over by a running exporter.
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

/// What a signal asks for.
enum Asked {
    Reload,
    Stop(&'static str),
}

impl Signals {
    fn install() -> Result<Signals, ServeError> {
        let take = |kind| signal(kind).map_err(ServeError::Signals);
        Ok(Signals {
            hangup: take(SignalKind::hangup())?,
            terminate: take(SignalKind::terminate())?,
            interrupt: take(SignalKind::interrupt())?,
        })
    }

    /// The next signal; never, without signals.
    async fn next(signals: &mut Option<Signals>) -> Asked {
        let Some(s) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = s.hangup.recv() => Asked::Reload,
            _ = s.terminate.recv() => Asked::Stop("SIGTERM"),
            _ = s.interrupt.recv() => Asked::Stop("SIGINT"),
        }
    }
}

/// Runs until SIGTERM/SIGINT or `stop` is cancelled.
pub async fn run(options: Options, stop: CancellationToken) -> Result<(), ServeError> {
    Server::bind(options).await?.run(stop).await
}

impl Server {
    /// Reads the configuration (off the runtime) and binds its listen address.
    pub async fn bind(options: Options) -> Result<Server, ServeError> {
        let (config, web) = {
            let options = options.clone();
            tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
                let config = options.load(&options.config_path)?;
                let web = load_web(&config)?;
                Ok((config, web))
            })
            .await
            .map_err(|e| ServeError::Start(e.to_string()))??
        };
        let listeners = if options.systemd_socket {
            systemd_listeners()?
        } else {
            let mut addresses = options.listen_addresses(&options.config_path)?;
            if addresses.is_empty() {
                addresses.push(config.web.listen_address);
            }
            let mut listeners = Vec::new();
            for address in addresses {
                let listener =
                    TcpListener::bind(address)
                        .await
                        .map_err(|source| ServeError::Listen {
                            address: address.to_string(),
                            source,
                        })?;
                listeners.push(listener);
            }
            listeners
        };
        Ok(Server {
            options,
            config,
            web,
            listeners,
            signals: true,
        })
    }

    /// Leaves the process's signals alone: only `stop` ends [`Server::run`], and reloads come
    /// by `POST /-/reload`.
    pub fn without_signals(self) -> Server {
        Server {
            signals: false,
            ..self
        }
    }

    /// The address the exporter listens on (the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(self.config.web.listen_address)
    }

    /// Serves until SIGTERM/SIGINT or `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) -> Result<(), ServeError> {
        let local = self.local_addr();
        let Server {
            options,
            config,
            web,
            listeners,
            signals,
        } = self;
        let mut signals = if signals {
            Some(Signals::install()?)
        } else {
            None
        };

        let (storage, restored) = Storage::load(&config.storage.path).await;
        let unmanaged = match &config.proxmox {
            Some(_) if config.sharding.checks_unmanaged() => storage.load_unmanaged().await,
            _ => None,
        };
        storage
            .prune(config.storage.retention, chrono::Utc::now())
            .await;
        let state = Arc::new(State::new(config.clone(), restored, unmanaged));
        state.show_web(config.web.external_url.as_deref(), web.tls.is_some());
        state.show_shard(config.sharding);
        let (changes, queue) = Changes::channel();
        let (reads, read_requests) = crate::attribution::Reads::pair();
        let scheduler = start_scheduler(&config, &state, &changes, &storage, reads);
        let watcher = Arc::new(Watcher::start(
            state.clone(),
            storage.clone(),
            changes.clone(),
            scheduler.terraform_limit(),
            read_requests,
        ));
        let web = Arc::new(RwLock::new(Arc::new(web)));
        let supervisor = Supervisor {
            state: state.clone(),
            storage: storage.clone(),
            scheduler: scheduler.clone(),
            watcher: watcher.clone(),
            web: web.clone(),
            config_path: options.config_path.clone(),
            load: options.loader(),
        };
        let supervisor_stop = CancellationToken::new();
        let supervising = tokio::spawn(supervisor.run(queue, supervisor_stop.clone()));
        let app = Arc::new(App::new(
            state.clone(),
            storage,
            scheduler.clone(),
            changes.clone(),
            web.clone(),
            options.telemetry.clone(),
        ));
        let web_mode = web.read().unwrap_or_else(|p| p.into_inner()).describe();
        let all: Vec<String> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        tracing::info!(address = %local, addresses = %all.join(","), systemd_socket = options.systemd_socket, config = %options.config_path.display(), environments = config.environments.len(), web = %web_mode, "listening");
        crate::environ::say_inherited();
        let http_stop = CancellationToken::new();
        let http = tokio::spawn(crate::http::serve(listeners, app, http_stop.clone()));

        loop {
            // `[discovery]`: its directories are looked at again every interval.
            let rediscover = state.config().discovery.as_ref().map(|d| d.interval);
            tokio::select! {
                asked = Signals::next(&mut signals) => match asked {
                    Asked::Reload => { let _ = changes.reload().await; }
                    Asked::Stop(signal) => { tracing::info!("{signal}: shutting down"); break; }
                },
                _ = after(rediscover) => changes.rediscover().await,
                _ = stop.cancelled() => break,
            }
        }
        stop_scans(&state, &scheduler, &watcher).await;
        supervisor_stop.cancel();
        let _ = supervising.await;
        http_stop.cancel();
        let _ = http.await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The TCP sockets systemd passed (`LISTEN_FDS`, `LISTEN_PID`), for `--web.systemd-socket`.
fn systemd_listeners() -> Result<Vec<TcpListener>, ServeError> {
    let failed = |what: String| ServeError::Listen {
        address: "--web.systemd-socket".into(),
        source: std::io::Error::other(what),
    };
    let mut passed = listenfd::ListenFd::from_env();
    let mut listeners = Vec::new();
    for i in 0..passed.len() {
        let listener = passed
            .take_tcp_listener(i)
            .map_err(|e| failed(format!("socket {i} systemd passed: {e}")))?;
        if let Some(listener) = listener {
            listener
                .set_nonblocking(true)
                .map_err(|e| failed(e.to_string()))?;
            listeners.push(TcpListener::from_std(listener).map_err(|e| failed(e.to_string()))?);
        }
    }
    if listeners.is_empty() {
        return Err(failed(
            "systemd passed no TCP socket (LISTEN_FDS is not set for this process): start it from a .socket unit".into(),
        ));
    }
    Ok(listeners)
}

/// The scheduler with every environment's task, its scans held until what a dead exporter
/// left running (kill -9, OOM) is gone: it may hold the state lock and uses the same
/// TF_DATA_DIR.
fn start_scheduler(
    config: &Config,
    state: &Arc<State>,
    changes: &Changes,
    storage: &Storage,
    reads: crate::attribution::Reads,
) -> Arc<Scheduler> {
    let scanner = Arc::new(TerraformScanner {
        storage: storage.clone(),
        reads,
    });
    let scheduler = Arc::new(Scheduler::paused(
        state.clone(),
        changes.clone(),
        scanner,
        config.max_concurrent_scans,
    ));
    for planned in scheduler.apply(config) {
        planned.show(state);
    }
    let resumed = scheduler.clone();
    let storage = config.storage.path.clone();
    let grace: BTreeMap<String, Duration> = config
        .environments
        .iter()
        .map(|(name, env)| (name.clone(), env.kill_grace))
        .collect();
    tokio::spawn(async move {
        let ended = tokio::task::spawn_blocking(move || {
            crate::orphans::end_dead_exporters(&storage, &grace)
        })
        .await;
        if let Err(e) = ended {
            tracing::error!(error = %e, "cannot look for processes of a dead exporter");
        }
        resumed.resume();
    });
    scheduler
}

/// Stops scheduling and interrupts running scans and the check; bounded by the longest
/// kill_grace.
async fn stop_scans(state: &State, scheduler: &Scheduler, watcher: &Watcher) {
    let grace = state
        .config()
        .environments
        .values()
        .map(|e| e.kill_grace)
        .max()
        .unwrap_or_default();
    let stopping = async { tokio::join!(scheduler.shutdown(), watcher.shutdown()) };
    if tokio::time::timeout(grace + Duration::from_secs(4), stopping)
        .await
        .is_err()
    {
        tracing::warn!("scans did not end in time; exiting anyway");
    }
}

/// Sleeps `every`, or forever when it is `None`.
async fn after(every: Option<std::time::Duration>) {
    match every {
        Some(every) => tokio::time::sleep(every).await,
        None => std::future::pending().await,
    }
}
