//! The command line (interface §5): flags parsed raw by clap, then dispatched. Exit codes:
//! `0` conform, `2` drift, `1` error; usage errors 64 (EX_USAGE), unreadable input 66
//! (EX_NOINPUT), bad configuration 78 (EX_CONFIG); never 2 for anything but drift.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cancel::CancellationToken;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, DEFAULT_PATH};
use crate::logging::LogFormat;
use crate::output::render_text;
use crate::plan::{ExplainOptions, understand_plan};
use crate::report::{Report, Status};

pub const EX_USAGE: u8 = 64;
pub const EX_NOINPUT: u8 = 66;
pub const EX_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "tfdrift-exporter",
    version,
    about = "Prometheus exporter that runs terraform/tofu plan on a schedule and reports drift"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address the exporter listens on (overrides web.listen_address; repeatable).
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    listen_address: Vec<String>,
    /// Listen on the sockets systemd passes (socket activation) instead.
    #[arg(long = "web.systemd-socket")]
    systemd_socket: bool,
    /// Web configuration file: TLS and basic authentication (exporter-toolkit format;
    /// overrides web.config_file).
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config: Option<PathBuf>,
    /// Path under which the metrics are served.
    #[arg(
        long = "web.telemetry-path",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    telemetry_path: String,
    /// Leave out the exporter's own process_* metrics.
    #[arg(long = "web.disable-exporter-metrics")]
    disable_exporter_metrics: bool,
    /// Concurrent metrics requests at most (0: no limit); more are answered 503.
    #[arg(long = "web.max-requests", default_value_t = 40, value_name = "N")]
    max_requests: usize,
    /// This replica's shard, from 0, or "auto": the number after the last "-" of the host
    /// name (a StatefulSet pod); overrides sharding.shard.
    #[arg(long = "shard", value_name = "N|auto")]
    shard: Option<String>,
    /// Replicas sharing the environments (1: sharding off); overrides sharding.total_shards.
    #[arg(long = "total-shards", value_name = "M")]
    total_shards: Option<u32>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(
        long = "log.level",
        global = true,
        default_value = "info",
        value_name = "LEVEL"
    )]
    log_level: String,
    /// Log format.
    #[arg(long = "log.format", global = true, value_enum, default_value_t = LogFormat::Logfmt)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the exporter (the default when no command is given).
    Serve,
    /// Scan now, once, and print the report(s).
    Scan {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Environments to scan (all when none is named).
        envs: Vec<String>,
    },
    /// Read the output of `terraform show -json` and print the report.
    Explain {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Apply this environment's settings (needs --config).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// The plan JSON file, or - for standard input.
        plan_json: String,
    },
    /// Validate the configuration and print each environment's effective settings.
    CheckConfig,
    /// Print how to resolve the last drift of ENV: revert or adopt. Runs nothing.
    Reconcile {
        /// The environment.
        env: String,
    },
    /// List Proxmox guests that no environment's state manages (exit 0 none, 2 some, 1 error).
    Unmanaged {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(message) = crate::logging::init(&cli.log_level, cli.log_format) {
        eprintln!("tfdrift-exporter: --log.level: {message}");
        return ExitCode::from(EX_USAGE);
    }
    let config_path = cli.config.clone();
    let code = match cli.command {
        Some(Command::Explain {
            format,
            env,
            plan_json,
        }) => explain(config_path.as_deref(), env.as_deref(), &plan_json, format),
        Some(Command::Scan { format, envs }) => scan(
            &config_path.unwrap_or_else(|| DEFAULT_PATH.into()),
            &envs,
            format,
        ),
        Some(Command::CheckConfig) => {
            check_config(&config_path.unwrap_or_else(|| DEFAULT_PATH.into()))
        }
        Some(Command::Reconcile { env }) => {
            reconcile(&config_path.unwrap_or_else(|| DEFAULT_PATH.into()), &env)
        }
        Some(Command::Unmanaged { format }) => {
            unmanaged(&config_path.unwrap_or_else(|| DEFAULT_PATH.into()), format)
        }
        Some(Command::Serve) | None => {
            if !cli.telemetry_path.starts_with('/') || cli.telemetry_path == "/" {
                return ExitCode::from(fail(
                    EX_USAGE,
                    format!(
                        "--web.telemetry-path {:?}: a path like /metrics, not / (the landing page)",
                        cli.telemetry_path
                    ),
                ));
            }
            serve(crate::serve::Options {
                config_path: config_path.unwrap_or_else(|| DEFAULT_PATH.into()),
                listen: cli.listen_address,
                systemd_socket: cli.systemd_socket,
                web_config: cli.web_config,
                shard: cli.shard,
                total_shards: cli.total_shards,
                telemetry: crate::http::Telemetry {
                    path: cli.telemetry_path,
                    exporter_metrics: !cli.disable_exporter_metrics,
                    max_requests: cli.max_requests,
                },
            })
        }
    };
    ExitCode::from(code)
}

fn fail(code: u8, message: impl std::fmt::Display) -> u8 {
    eprintln!("tfdrift-exporter: {message}");
    code
}

fn load(path: &Path) -> Result<Config, u8> {
    Config::load(path).map_err(|e| fail(EX_CONFIG, e))
}

/// Writes `text` to standard output. A closed pipe (`| head`, `| true`) is not an error
/// worth a message, nor a panic as `print!` makes it: the command ends with its own code.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Writes reports to standard output, streamed (a report can be tens of MB).
fn print_reports(reports: &[Report], format: Format, as_array: bool) {
    let stdout = std::io::stdout();
    let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let written = match format {
        Format::Json if as_array => {
            serde_json::to_writer_pretty(&mut out, reports).map_err(std::io::Error::from)
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &reports[0]).map_err(std::io::Error::from)
        }
        Format::Text => out.write_all(render_text(reports, colour).as_bytes()),
    };
    let end: &[u8] = if format == Format::Json { b"\n" } else { b"" };
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = written
        .and_then(|_| out.write_all(end))
        .and_then(|_| out.flush());
}

#[allow(
    clippy::disallowed_methods,
    reason = "the explain command: blocking, on the main thread"
)]
fn explain(config: Option<&Path>, env: Option<&str>, input: &str, format: Format) -> u8 {
    let mut options = ExplainOptions::default();
    let mut rules = Vec::new();
    match (config, env) {
        (Some(path), Some(name)) => {
            let config = match load(path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match config.environments.get(name) {
                Some(e) => {
                    options.refresh_only = e.refresh_only;
                    rules = e.ignore.clone();
                }
                None => {
                    return fail(
                        EX_CONFIG,
                        format!("{}: no environment {name:?}", path.display()),
                    );
                }
            }
        }
        (None, Some(_)) => return fail(EX_USAGE, "--env needs --config"),
        _ => {}
    }
    let understood = if input == "-" {
        understand_plan(std::io::stdin().lock(), options)
    } else {
        match std::fs::File::open(input) {
            Ok(file) => understand_plan(file, options),
            Err(e) => return fail(EX_NOINPUT, format!("cannot read {input}: {e}")),
        }
    };
    match understood {
        Ok(mut outcome) => {
            crate::ignore::apply(&mut outcome, &rules, chrono::Local::now().date_naive());
            let report = Report::from_outcome(outcome);
            let code = report.status.exit_code();
            print_reports(std::slice::from_ref(&report), format, false);
            // The process ends now: freeing a large report piece by piece would only cost time.
            std::mem::forget(report);
            code
        }
        Err(e) => fail(1, format!("{input}: {e}")),
    }
}

fn scan(path: &Path, names: &[String], format: Format) -> u8 {
    crate::environ::say_inherited();
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let envs = match config.select(names) {
        Ok(envs) => envs,
        Err(e) => return fail(EX_USAGE, e),
    };
    let (runtime, cancel) = match one_shot_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut reports = Vec::new();
    let mut worst = Status::Conform;
    let storage = crate::store::Storage::open(&config.storage.path);
    for env in envs {
        match runtime.block_on(crate::scan::scan_and_commit(env, &storage, &cancel)) {
            Some(stored) => {
                worst = worst.worst(stored.report.status);
                reports.push(stored.report);
            }
            None => return fail(130, "interrupted"),
        }
    }
    print_reports(&reports, format, true);
    worst.exit_code()
}

/// The async runtime of a one-shot command, with Ctrl-C passed on to terraform (it runs in
/// its own process group, out of reach of the terminal) so that it releases its state lock.
fn one_shot_runtime() -> Result<(tokio::runtime::Runtime, CancellationToken), u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(1, format!("cannot start the async runtime: {e}")))?;
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    Ok((runtime, cancel))
}

fn unmanaged(path: &Path, format: Format) -> u8 {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(proxmox) = config.proxmox.clone() else {
        return fail(
            EX_CONFIG,
            format!(
                "{}: key \"proxmox\": not configured: add a [proxmox] section (api_url, token_id, token_secret_file)",
                path.display()
            ),
        );
    };
    let (runtime, cancel) = match one_shot_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let previous = crate::store::load_unmanaged(&config.storage.path);
    // As many terraform at once as the exporter would start.
    let limit = crate::gate::Gate::new(config.max_concurrent_scans);
    let checked = runtime.block_on(crate::unmanaged::check(&config, &proxmox, &limit, &cancel));
    let result = match checked {
        Ok(Ok(mut result)) => {
            runtime.block_on(crate::unmanaged::name_creators(
                &mut result,
                &proxmox,
                &config.storage.path,
            ));
            result
        }
        Ok(Err(error)) => crate::unmanaged::Unmanaged::failed(error, previous.as_ref()),
        Err(crate::cancel::Cancelled) => return fail(130, "interrupted"),
    };
    if let Err(e) = crate::store::save_unmanaged(&config.storage.path, &result) {
        tracing::warn!(error = %e, "cannot store the check for reconcile and the exporter");
    }
    let mut out = std::io::stdout().lock();
    let _ = match format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &result)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n")),
        Format::Text => out.write_all(crate::unmanaged::render_text(&result).as_bytes()),
    };
    let _ = out.flush();
    result.exit_code()
}

fn serve(options: crate::serve::Options) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(1, format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(crate::serve::run(options, CancellationToken::new())) {
        Ok(()) => 0,
        Err(e @ (crate::serve::ServeError::Config(_) | crate::serve::ServeError::WebConfig(_))) => {
            fail(EX_CONFIG, e)
        }
        Err(e) => fail(1, e),
    }
}

fn reconcile(path: &Path, name: &str) -> u8 {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let env = match config.select(&[name.to_owned()]) {
        Ok(envs) => envs[0],
        Err(e) => return fail(EX_USAGE, e),
    };
    let (_, mut restored) = crate::store::History::load(&config.storage.path);
    let report = restored.remove(name).and_then(|r| r.latest);
    let unmanaged = config
        .proxmox
        .as_ref()
        .and_then(|_| crate::store::load_unmanaged(&config.storage.path));
    let Some(report) = report else {
        if let Some(unmanaged) = &unmanaged {
            emit(&format!(
                "{name}: no stored scan yet (run `tfdrift-exporter scan {name}`).\n{}",
                crate::reconcile::adopt_unmanaged(env, unmanaged)
            ));
            return 0;
        }
        return fail(
            1,
            format!(
                "no stored scan of {name} under {}: run `tfdrift-exporter scan {name}` first",
                config.storage.path.display()
            ),
        );
    };
    let address = config.web.listen_address;
    let host = if address.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        address.ip().to_string()
    };
    // The web configuration in force decides the scheme and the credentials; an unreadable
    // one is the running exporter's problem, not the guide's.
    let web = config
        .web
        .config_file
        .as_deref()
        .and_then(|f| crate::webconfig::WebConfig::load(f).ok())
        .unwrap_or_default();
    let exporter = crate::reconcile::trigger_command(
        &format!("{host}:{}", address.port()),
        web.tls.is_some(),
        web.first_user(),
    );
    let mut text = crate::reconcile::guide(env, &report, &exporter);
    if let Some(unmanaged) = &unmanaged {
        text.push_str(&crate::reconcile::adopt_unmanaged(env, unmanaged));
    } else if config.proxmox.is_some() {
        text.push_str(
            "\nNo unmanaged-guest check is stored yet: run `tfdrift-exporter unmanaged` for import blocks.\n",
        );
    }
    emit(&text);
    0
}

fn check_config(path: &Path) -> u8 {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    emit(&config.describe(chrono::Local::now()));
    match crate::serve::load_web(&config) {
        Ok(web) => {
            emit(&format!("\nweb: {}\n", web.describe()));
            0
        }
        Err(e) => fail(EX_CONFIG, e),
    }
}
