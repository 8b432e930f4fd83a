//! The long-running exporter: configuration validated before any port is bound, history
//! restored, scheduler and HTTP started, reload on SIGHUP or `POST /-/reload`, graceful
//! shutdown on SIGTERM/SIGINT (running terraform interrupted so that locks are released).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::exporter::Exporter;
use crate::http::App;
use crate::scheduler::{Scheduler, TerraformScanner};
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
    #[error("cannot restore the stored state: {0}")]
    Start(String),
}

/// The web configuration the configuration names (none: plain HTTP, no authentication).
pub fn load_web(config: &Config) -> Result<WebConfig, WebConfigError> {
    match &config.web.config_file {
        Some(file) => WebConfig::load(file),
        None => Ok(WebConfig::none()),
    }
}

/// Runs until SIGTERM/SIGINT or `stop` is cancelled.
pub async fn run(
    config_path: PathBuf,
    listen: Option<String>,
    web_config: Option<PathBuf>,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let load = {
        let listen = listen.clone();
        move |path: &PathBuf| -> Result<Config, ConfigError> {
            let mut config = Config::load(path)?;
            if let Some(file) = &web_config {
                config.web.config_file = Some(file.clone());
            }
            if let Some(address) = &listen {
                config.web.listen_address = address.parse().map_err(|_| ConfigError::Invalid {
                    file: path.clone(),
                    key: "--web.listen-address".into(),
                    message: format!("{address:?} is not an address like \"0.0.0.0:9847\""),
                })?;
            }
            Ok(config)
        }
    };
    let config = load(&config_path)?;
    let web = Arc::new(RwLock::new(Arc::new(load_web(&config)?)));
    let address = config.web.listen_address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Listen {
            address: address.to_string(),
            source,
        })?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;

    // Restoring reads the history's index and the latest reports: off the runtime's threads.
    let exporter = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Exporter::start(config))
            .await
            .map_err(|e| ServeError::Start(e.to_string()))?
    };
    let exporter = Arc::new(exporter);
    let scanner = Arc::new(TerraformScanner {
        storage: config.storage.path.clone(),
    });
    // Scans wait until what a dead exporter left running (kill -9, OOM) is gone: it may
    // hold the state lock and uses the same TF_DATA_DIR.
    let scheduler = Arc::new(Scheduler::paused(
        exporter.clone(),
        scanner,
        config.max_concurrent_scans,
    ));
    scheduler.apply(&config);
    {
        let scheduler = scheduler.clone();
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
            scheduler.resume();
        });
    }
    let watcher = Arc::new(Watcher::start(exporter.clone()));

    let reload = {
        let exporter = exporter.clone();
        let scheduler = scheduler.clone();
        let watcher = watcher.clone();
        let web = web.clone();
        let path = config_path.clone();
        // SIGHUP and POST /-/reload may come at once: one reload at a time, each whole.
        let one_at_a_time = std::sync::Mutex::new(());
        move || -> Result<(), String> {
            let _one = one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
            let loaded = load(&path)
                .map_err(|e| e.to_string())
                .and_then(|new| load_web(&new).map(|w| (new, w)).map_err(|e| e.to_string()))
                .and_then(|(new, new_web)| {
                    let running = web.read().unwrap_or_else(|p| p.into_inner()).clone();
                    match new_web.downgrade_from(&running) {
                        Some(refused) => Err(refused),
                        None => Ok((new, new_web)),
                    }
                });
            match loaded {
                Ok((mut new, new_web)) => {
                    *web.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new_web);
                    let old = exporter.config();
                    if new.web.listen_address != old.web.listen_address
                        || new.storage.path != old.storage.path
                    {
                        tracing::warn!(
                            "web.listen_address and storage.path changes take effect at the next start"
                        );
                        // Until then everything goes on with the running ones: never half.
                        new.web.listen_address = old.web.listen_address;
                        new.storage.path = old.storage.path.clone();
                    }
                    // The state first, so that the scheduler's first word on a new
                    // environment (its next scan) has a place to land; then the watcher.
                    exporter.set_config(new.clone());
                    scheduler.apply(&new);
                    watcher.apply(&new);
                    tracing::info!(file = %path.display(), "configuration reloaded");
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload failed: the running configuration stays");
                    Err(e)
                }
            }
        }
    };
    let reload = Arc::new(reload);
    let app = Arc::new(App {
        exporter: exporter.clone(),
        scheduler: scheduler.clone(),
        reload: Box::new({
            let reload = reload.clone();
            move || reload()
        }),
        web: web.clone(),
        scan_limits: Mutex::new(HashMap::new()),
    });
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let web_mode = web.read().unwrap_or_else(|p| p.into_inner()).describe();
    tracing::info!(address = %local, config = %config_path.display(), environments = config.environments.len(), web = %web_mode, "listening");
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(crate::http::serve(listener, app, http_stop.clone()));

    loop {
        tokio::select! {
            _ = hangup.recv() => { let _ = reload(); }
            _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = stop.cancelled() => break,
        }
    }
    // Stop scheduling and interrupt running scans; bounded by the longest kill_grace.
    let grace = exporter
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
    http_stop.cancel();
    let _ = http.await;
    tracing::info!("stopped");
    Ok(())
}
