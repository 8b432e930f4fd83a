//! The Proxmox VE inventory: `GET /api2/json/cluster/resources?type=vm` over TLS with an
//! API token. TLS trusts the configured CA file (the cluster's `pve-root-ca.pem`), else the
//! system's CA certificates; `insecure` skips verification and is never the default.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

mod inventory;
mod pool;

use super::{CheckError, CheckReason};
use crate::config::{Proxmox, TokenSecret};
pub use inventory::parse_inventory;
use pool::{Connection, SendError};

/// The largest inventory answer read (a cluster of 10,000 guests is about 3 MB).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// A VM or a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Qemu,
    Lxc,
}

impl GuestKind {
    pub const ALL: [GuestKind; 2] = [GuestKind::Qemu, GuestKind::Lxc];

    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }
}

/// A guest of the inventory, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    pub vmid: u32,
    /// Missing when the guest's node is offline.
    pub name: Option<String>,
    pub node: String,
    pub kind: GuestKind,
    /// `running`, `stopped`, `unknown` (node offline), ...
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Who created it and when (its `qmcreate`/`vzcreate` task), when attribution knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<crate::report::Attribution>,
    /// When it was created: its creation task, else a VM config's `meta` `ctime`.
    #[serde(
        default,
        with = "crate::report::rfc3339_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reads the token's secret (at every check, so that a rotated secret is picked up).
#[allow(
    clippy::disallowed_methods,
    reason = "read in unmanaged::prepare's spawn_blocking"
)]
pub fn token_secret(p: &Proxmox) -> Result<String, CheckError> {
    let config = |summary: String| CheckError::new(CheckReason::Config, summary);
    let secret = match &p.token_secret {
        TokenSecret::File(file) => std::fs::read_to_string(file).map_err(|e| {
            config(format!(
                "proxmox.token_secret_file: cannot read {}: {e}",
                file.display()
            ))
        })?,
        TokenSecret::EnvVar(var) => std::env::var(var).map_err(|_| {
            config(format!(
                "proxmox.token_secret_env: the variable {var} is not set"
            ))
        })?,
    };
    let secret = secret.trim();
    // Accept a file holding the whole `USER@REALM!ID=SECRET` too.
    let secret = secret
        .strip_prefix(&format!("{}=", p.token_id))
        .unwrap_or(secret);
    if secret.is_empty() || secret.contains(['\n', '\r']) {
        return Err(config(match &p.token_secret {
            TokenSecret::File(file) => format!(
                "proxmox.token_secret_file: {} must hold the token's secret on one line",
                file.display()
            ),
            TokenSecret::EnvVar(var) => {
                format!("proxmox.token_secret_env: {var} must hold the token's secret on one line")
            }
        }));
    }
    Ok(secret.to_owned())
}

/// How to reach the API: one per settings, secret and CA file (see
/// [`super::prepare`]), its TLS configuration built once and its connections kept alive
/// between requests and polls.
pub struct Client {
    api_url: String,
    host: String,
    port: u16,
    /// `host:port`, as HTTP/1.1 asks (the port left out when it is 443).
    host_header: String,
    authorization: String,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    idle: std::sync::Mutex<Vec<Connection>>,
}

impl Client {
    pub fn new(p: &Proxmox, secret: &str) -> Result<Client, CheckError> {
        let config = |summary: String| CheckError::new(CheckReason::Config, summary);
        let (host, port) = (p.api_url.host.clone(), p.api_url.port);
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config(format!("TLS setup: {e}")))?;
        let tls = if p.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(p)?)
                .with_no_client_auth()
        };
        let host_header = match port {
            443 => host.clone(),
            port => format!("{host}:{port}"),
        };
        Ok(Client {
            api_url: p.api_url.url.clone(),
            host,
            port,
            host_header,
            authorization: format!("PVEAPIToken={}={secret}", p.token_id),
            tls: Arc::new(tls),
            timeout: p.timeout,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The guests of the cluster (templates left out).
    pub async fn guests(&self) -> Result<Vec<Guest>, CheckError> {
        let body = self.get("/cluster/resources?type=vm").await?;
        parse_inventory(&body).map_err(|e| CheckError::new(CheckReason::Api, e))
    }

    /// When a VM was created, from its config's `meta` (`creation-qemu=...,ctime=<epoch>`).
    pub async fn created_at(&self, guest: &Guest) -> Option<chrono::DateTime<chrono::Utc>> {
        if guest.kind != GuestKind::Qemu {
            return None;
        }
        if !valid_node(&guest.node) {
            return None;
        }
        let path = format!("/nodes/{}/qemu/{}/config", guest.node, guest.vmid);
        let config = self.data(&path).await.ok()?;
        let ctime = config["meta"]
            .as_str()?
            .split(',')
            .find_map(|kv| kv.strip_prefix("ctime="))?
            .parse()
            .ok()?;
        chrono::DateTime::from_timestamp(ctime, 0)
    }

    /// The `data` of a GET of `/api2/json{path}`.
    pub async fn data(&self, path: &str) -> Result<serde_json::Value, CheckError> {
        self.data_within(path, MAX_ANSWER).await
    }

    /// The same, for an answer of at most `limit` bytes (a longer one is an API error).
    pub async fn data_within(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<serde_json::Value, CheckError> {
        let body = self.get_within(path, limit).await?;
        let mut answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            CheckError::new(
                CheckReason::Api,
                format!("GET {path}: the answer is not JSON: {e}"),
            )
        })?;
        Ok(answer["data"].take())
    }

    /// One GET of `/api2/json{path}`, bounded by the request timeout as a whole.
    async fn get(&self, path: &str) -> Result<Bytes, CheckError> {
        self.get_within(path, MAX_ANSWER).await
    }

    async fn get_within(&self, path: &str, limit: usize) -> Result<Bytes, CheckError> {
        let url = format!("{}/api2/json{path}", self.api_url);
        match tokio::time::timeout(self.timeout, self.get_unbounded(&url, limit)).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::new(
                CheckReason::Connectivity,
                format!(
                    "GET {url}: no answer within {} (proxmox.timeout)",
                    crate::schedule::human(self.timeout)
                ),
            )),
        }
    }

    async fn get_unbounded(&self, url: &str, limit: usize) -> Result<Bytes, CheckError> {
        let failed = |e: SendError| match e {
            SendError::Http(what) => {
                CheckError::new(CheckReason::Connectivity, format!("GET {url}: {what}"))
            }
            SendError::TooLarge(limit) => CheckError::new(
                CheckReason::Api,
                format!(
                    "GET {url}: the answer is longer than {} MiB: not read",
                    limit >> 20
                ),
            ),
        };
        // An idle connection first; one the server closed meanwhile is replaced once.
        let answer = match self.idle() {
            Some(mut reused) => match self.send(&mut reused, url, limit).await {
                Ok(answer) => Some((reused, answer)),
                Err(e @ SendError::TooLarge(_)) => return Err(failed(e)),
                Err(SendError::Http(_)) => None,
            },
            None => None,
        };
        let (connection, (status, phrase, body)) = match answer {
            Some(done) => done,
            None => {
                let mut fresh = self.connect(url).await?;
                let answer = self.send(&mut fresh, url, limit).await.map_err(failed)?;
                (fresh, answer)
            }
        };
        self.keep(connection);
        match status.as_u16() {
            200..=299 => Ok(body),
            401 => Err(CheckError::new(
                CheckReason::Auth,
                format!(
                    "GET {url}: 401 {phrase}: the API refused the token (check proxmox.token_id and the secret; is the token revoked or expired?)"
                ),
            )),
            403 => Err(CheckError::new(
                CheckReason::Auth,
                format!(
                    "GET {url}: 403 {phrase}: the token may not read the inventory (give it the role PVEAuditor)"
                ),
            )),
            code => Err(CheckError::new(
                CheckReason::Api,
                format!(
                    "GET {url}: {code} {phrase}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
                ),
            )),
        }
    }
}

/// The CA file's bytes, when one is configured and reads (a changed file makes a new
/// client; an unreadable one is [`Client::new`]'s error to name).
#[allow(
    clippy::disallowed_methods,
    reason = "read in unmanaged::prepare's spawn_blocking"
)]
pub fn ca_bytes(p: &Proxmox) -> Option<Vec<u8>> {
    std::fs::read(p.ca_file.as_ref()?).ok()
}

/// The CA file's certificates, else the system's.
fn roots(p: &Proxmox) -> Result<RootCertStore, CheckError> {
    let config = |summary: String| CheckError::new(CheckReason::Config, summary);
    let mut roots = RootCertStore::empty();
    match &p.ca_file {
        Some(file) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                .map_err(|e| {
                    config(format!(
                        "proxmox.ca_file: cannot read {}: {e}",
                        file.display()
                    ))
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    config(format!(
                        "proxmox.ca_file: {} is not PEM certificates: {e}",
                        file.display()
                    ))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(config(format!(
                    "proxmox.ca_file: {} holds no usable certificate",
                    file.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(config(
                    "no system CA certificates found: set proxmox.ca_file to the cluster's pve-root-ca.pem".into(),
                ));
            }
        }
    }
    Ok(roots)
}

/// What a failed handshake means for the administrator.
fn tls_failure(e: &std::io::Error) -> String {
    let text = e.to_string();
    // A CA of the same name but another key fails the signature, not the issuer lookup.
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "TLS: the server's certificate is signed by an unknown authority (set proxmox.ca_file to the cluster's /etc/pve/pve-root-ca.pem)".to_owned()
    } else if text.contains("NotValidForName") {
        format!("TLS: the server's certificate is not valid for this host name ({text})")
    } else if text.contains("Expired") {
        format!("TLS: the server's certificate has expired ({text})")
    } else {
        format!("TLS: {text}")
    }
}

/// `insecure = true`: any certificate is accepted; handshake signatures are still checked.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A node name as Proxmox allows it (a DNS label: letters, digits, `-`): what may go into a
/// request path.
pub fn valid_node(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
}

#[cfg(test)]
mod tests {
    use crate::config::split_host_port;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("pve1.lan"), Some(("pve1.lan".into(), 8006)));
        assert_eq!(
            split_host_port("10.0.0.2:443"),
            Some(("10.0.0.2".into(), 443))
        );
        assert_eq!(split_host_port("[::1]:8006"), Some(("[::1]".into(), 8006)));
        assert_eq!(split_host_port("pve:x"), None);
    }
}
