//! `pvesim --listen 127.0.0.1:0 --token USER@REALM!ID=SECRET --ca-out ca.pem [--guest JSON]...`
//! serves a simulated Proxmox VE API over HTTPS until SIGTERM/SIGINT, with a CA it generates
//! (written to `--ca-out`) or with `--tls-cert FILE --tls-key FILE` given. It prints
//! `listening https://ADDRESS` on standard output once it accepts connections.

#![allow(
    clippy::disallowed_methods,
    reason = "test support: a simulator and a provider process, not the exporter's runtime"
)]

use std::sync::Arc;

use pvesim::{Cluster, Guest, certificates, serve, write};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut ca_out = None;
    let mut tls_cert = None;
    let mut tls_key = None;
    let cluster = Arc::new(Cluster::default());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--listen" => listen = value()?,
            "--token" => {
                cluster.tokens.lock().unwrap().insert(value()?);
            }
            "--ca-out" => ca_out = Some(value()?),
            "--tls-cert" => tls_cert = Some(value()?),
            "--tls-key" => tls_key = Some(value()?),
            "--guest" => {
                let guest: Guest = serde_json::from_str(&value()?)?;
                cluster.guests.lock().unwrap().insert(guest.vmid, guest);
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let certs = match (&tls_cert, &tls_key) {
        (Some(cert), Some(key)) => pvesim::certificates_from_files(cert.as_ref(), key.as_ref())?,
        (None, None) => certificates()?,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    if let Some(path) = &ca_out {
        write(std::path::Path::new(path), &certs.ca_pem)?;
    }
    let (running, _handle) = serve(&listen, cluster, certs).await?;
    println!("listening https://{}", running.address);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
