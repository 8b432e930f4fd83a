//! What `check-config` prints of a valid configuration.

use super::*;

impl Config {
    /// The effective settings of every environment and its next three runs, for
    /// `check-config`.
    pub fn describe(&self, now: chrono::DateTime<chrono::Local>) -> String {
        use std::fmt::Write;
        let d = crate::schedule::human;
        let mut out = String::new();
        let _ = writeln!(out, "configuration: {} (valid)", self.file.display());
        let _ = writeln!(out, "listen address: {}", self.web.listen_address);
        if let Some(url) = &self.web.external_url {
            let _ = writeln!(out, "external url:   {url}");
        }
        let _ = writeln!(
            out,
            "storage: {} (retention {})",
            self.storage.path.display(),
            d(self.storage.retention)
        );
        let _ = writeln!(out, "max concurrent scans: {}", self.max_concurrent_scans);
        if let Some(d) = &self.discovery {
            let _ = writeln!(
                out,
                "discovery: {} include {} exclude {} named {} (looked at again every {}): {} environments under root",
                d.root.display(),
                d.include.join(", "),
                if d.exclude.is_empty() {
                    "-".to_owned()
                } else {
                    d.exclude.join(", ")
                },
                d.name,
                humantime::format_duration(d.interval),
                self.environments
                    .values()
                    .filter(|e| e.dir.starts_with(&d.root))
                    .count()
            );
        }
        if let Some(p) = &self.proxmox {
            describe_proxmox(&mut out, p);
        }
        for env in self.environments.values() {
            describe_environment(&mut out, env, now);
        }
        out
    }
}

/// Items joined by commas, or `-` for none (check-config).
fn listed(items: Vec<String>) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// `[proxmox]` as check-config prints it.
#[allow(
    clippy::disallowed_methods,
    reason = "check-config, a one-shot command without a runtime"
)]
fn describe_proxmox(out: &mut String, p: &Proxmox) {
    use std::fmt::Write;
    let d = crate::schedule::human;
    let _ = writeln!(out, "\nproxmox (unmanaged guests)");
    let _ = writeln!(out, "  api url:      {} as {}", p.api_url, p.token_id);
    let secret = match &p.token_secret {
        TokenSecret::File(f) if f.is_file() => format!("file {}", f.display()),
        TokenSecret::File(f) => {
            format!("file {}  (WARNING: not a readable file)", f.display())
        }
        TokenSecret::EnvVar(v) if std::env::var_os(v).is_some() => format!("variable {v}"),
        TokenSecret::EnvVar(v) => format!("variable {v}  (WARNING: not set)"),
    };
    let _ = writeln!(out, "  token secret: {secret}");
    let tls = match (&p.ca_file, p.insecure) {
        (_, true) => "INSECURE: certificates are not verified".to_owned(),
        (Some(ca), false) => format!("CA file {}", ca.display()),
        (None, false) => "the system's CA certificates".to_owned(),
    };
    let _ = writeln!(out, "  tls:          {tls}");
    let attribution = if p.attribution {
        format!(
            "cluster log and tasks every {} (Terraform's tokens: {})",
            d(p.attribution_interval),
            listed(p.terraform_token_ids.clone())
        )
    } else {
        "off".to_owned()
    };
    let _ = writeln!(out, "  attribution:  {attribution}");
    let signals = if p.events {
        format!(
            "a scan soon after Proxmox records a change (cluster log and tasks every {}, config digests every {})",
            d(p.attribution_interval),
            d(p.digest_interval)
        )
    } else {
        "off: scans follow the schedules only".to_owned()
    };
    let _ = writeln!(out, "  events:       {signals}");
    let _ = writeln!(
        out,
        "  interval:     every {} (request timeout {})",
        d(p.interval),
        d(p.timeout)
    );
    let _ = writeln!(
        out,
        "  empty inventory: {}",
        if p.allow_empty_inventory {
            "allowed"
        } else {
            "an error"
        }
    );
    let ranges: Vec<String> = p
        .ignore
        .vmids
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    let list = |items: &[String]| listed(items.to_vec());
    let _ = writeln!(
        out,
        "  ignore:       vmids {}; names {}; tags {}",
        list(&ranges),
        list(
            &p.ignore
                .names
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
        ),
        list(&p.ignore.tags)
    );
}

/// One environment's effective settings and its next three runs.
#[allow(
    clippy::disallowed_methods,
    reason = "check-config, a one-shot command without a runtime"
)]
fn describe_environment(out: &mut String, env: &Environment, now: chrono::DateTime<chrono::Local>) {
    use std::fmt::Write;
    let d = crate::schedule::human;
    let _ = writeln!(out, "\nenvironment {}", env.name);
    let dir_note = if env.dir.is_dir() {
        ""
    } else {
        "  (WARNING: not a directory)"
    };
    let _ = writeln!(out, "  dir:          {}{dir_note}", env.dir.display());
    let _ = writeln!(out, "  binary:       {}", env.binary);
    let _ = writeln!(
        out,
        "  schedule:     {} (jitter up to {}, run on start: {})",
        env.schedule.describe(),
        d(env.jitter),
        env.run_on_start
    );
    let _ = writeln!(
        out,
        "  timeout:      {} (kill grace {}, lock timeout {})",
        d(env.timeout),
        d(env.kill_grace),
        d(env.lock_timeout)
    );
    let _ = writeln!(out, "  init:         {}", env.init);
    let _ = writeln!(out, "  refresh only: {}", env.refresh_only);
    let _ = writeln!(out, "  parallelism:  {}", env.parallelism);
    let list = listed;
    let _ = writeln!(
        out,
        "  var files:    {}",
        list(
            env.var_files
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        )
    );
    let _ = writeln!(out, "  backend conf: {}", list(env.backend_config.clone()));
    let _ = writeln!(
        out,
        "  env:          {}",
        list(env.env.keys().cloned().collect())
    );
    let _ = writeln!(
        out,
        "  env files:    {}",
        list(
            env.env_files
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        )
    );
    for rule in &env.ignore {
        describe_ignore_rule(out, rule, now);
    }
    let runs: Vec<String> = env
        .schedule
        .upcoming(now, 3)
        .iter()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S %:z").to_string())
        .collect();
    let first = if env.run_on_start {
        "at start, then "
    } else {
        ""
    };
    let _ = writeln!(out, "  next runs:    {first}{}", runs.join(", "));
}

/// One ignore rule, with a note when it expired or cannot match.
fn describe_ignore_rule(out: &mut String, rule: &IgnoreRule, now: chrono::DateTime<chrono::Local>) {
    use std::fmt::Write;
    let mut notes = Vec::new();
    if !crate::ignore::in_force(rule, now.date_naive()) {
        notes.push("EXPIRED: no longer applied".to_owned());
    }
    if let Some(why) = crate::ignore::impossible_address(rule.address.as_str()) {
        notes.push(format!("WARNING: this address pattern cannot match: {why}"));
    }
    let _ = writeln!(
        out,
        "  ignore:       {} {} ({}{}){}",
        rule.address,
        rule.attribute
            .as_ref()
            .map_or("(whole resource)", |g| g.as_str()),
        rule.reason,
        rule.expires
            .map(|e| format!(", expires {e}"))
            .unwrap_or_default(),
        notes.iter().map(|n| format!("  {n}")).collect::<String>()
    );
}
