//! The web configuration file shared by Prometheus exporters (exporter-toolkit format,
//! `--web.config.file` or `[web] config_file`): TLS (`tls_server_config`), basic
//! authentication with bcrypt hashes (`basic_auth_users`) and response headers
//! (`http_server_config.headers`), applied to every endpoint. Reloaded with the
//! configuration; an invalid file keeps the running one.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::version::{TLS12, TLS13};
use tokio_rustls::rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

/// Successful logins remembered, so that a scrape every 15 s does not cost a bcrypt run.
const CACHE_SIZE: usize = 1024;

/// Response headers the file may set (the exporter-toolkit's list).
const HEADERS: &[&str] = &[
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// A web configuration file that cannot be used: names the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}: {message}", file.display())]
pub struct WebConfigError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<ClientAuth>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
}

/// `min_version` / `max_version`: the versions the exporter offers (older ones never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum TlsVersion {
    TLS12,
    TLS13,
}

/// `client_auth_type`, as the exporter-toolkit spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; the exporter speaks HTTP/1.1 only.
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The validated web configuration (empty: plain HTTP, no authentication).
#[derive(Debug, Default)]
pub struct WebConfig {
    pub file: Option<PathBuf>,
    pub tls: Option<Arc<ServerConfig>>,
    /// User name to bcrypt hash.
    users: BTreeMap<String, String>,
    pub headers: Vec<(String, String)>,
    /// Digests of (user, password, hash) that verified.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl WebConfig {
    /// No file: plain HTTP without authentication.
    pub fn none() -> WebConfig {
        WebConfig::default()
    }

    /// Reads and checks `file`; certificate and key files are read now.
    #[allow(
        clippy::disallowed_methods,
        reason = "read with the configuration: before the runtime (the CLI) or in spawn_blocking (serve's bind and reload)"
    )]
    pub fn load(file: &Path) -> Result<WebConfig, WebConfigError> {
        let err = |key: &str, message: String| WebConfigError {
            file: file.to_owned(),
            key: key.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| err("file", format!("cannot read the web configuration: {e}")))?;
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| err("yaml", e.to_string()))?
        };
        let tls = match raw.tls_server_config {
            Some(tls) => Some(Arc::new(server_config(tls, file)?)),
            None => None,
        };
        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err(err(
                    &key,
                    "a user name must be non-empty and without ':'".into(),
                ));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(err(
                    &key,
                    "is not a bcrypt hash like \"$2y$10$...\" (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)".into(),
                ));
            }
            users.insert(user, hash);
        }
        let mut headers = Vec::new();
        let http = raw.http_server_config.unwrap_or_default();
        if http.http2 == Some(true) {
            tracing::info!(file = %file.display(), "http_server_config.http2: the exporter serves HTTP/1.1 only");
        }
        for (name, value) in http.headers.unwrap_or_default() {
            let Some(known) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&name)) else {
                return Err(err(
                    &format!("http_server_config.headers.{name}"),
                    format!(
                        "not a header that may be set (one of {})",
                        HEADERS.join(", ")
                    ),
                ));
            };
            if hyper::header::HeaderValue::from_str(&value).is_err() {
                return Err(err(
                    &format!("http_server_config.headers.{name}"),
                    "is not a valid header value".into(),
                ));
            }
            headers.push(((*known).to_owned(), value));
        }
        Ok(WebConfig {
            file: Some(file.to_owned()),
            tls,
            users,
            headers,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// What this configuration would drop of the protection `running` gives (TLS, basic
    /// authentication), `None` when it drops nothing. A reload never lowers security: an
    /// emptied or truncated file must not turn a TLS endpoint into plain HTTP.
    pub fn downgrade_from(&self, running: &WebConfig) -> Option<String> {
        let mut dropped = Vec::new();
        if running.tls.is_some() && self.tls.is_none() {
            dropped.push("TLS (tls_server_config)");
        }
        if running.needs_auth() && !self.needs_auth() {
            dropped.push("basic authentication (basic_auth_users)");
        }
        if dropped.is_empty() {
            return None;
        }
        let file = match &self.file {
            Some(f) => format!("the web configuration {}", f.display()),
            None => "a configuration without a web configuration file".to_owned(),
        };
        Some(format!(
            "reload refused: {file} would turn off {} in force; restart the exporter to serve without it",
            dropped.join(" and ")
        ))
    }

    /// The first configured user (for commands printed to people).
    pub fn first_user(&self) -> Option<&str> {
        self.users.keys().next().map(String::as_str)
    }

    /// True when requests must carry basic authentication.
    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header. An unknown user costs a bcrypt run like a wrong
    /// password, so that the time of an answer does not tell which user names exist.
    pub async fn authorize(self: &Arc<Self>, header: Option<&str>) -> bool {
        if !self.needs_auth() {
            return true;
        }
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            // The first user's hash: the same cost as a real check.
            None => (
                self.users.values().next().cloned().unwrap_or_default(),
                false,
            ),
        };
        let digest: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if known
            && self
                .verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&digest)
        {
            return true;
        }
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
                && known;
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.len() >= CACHE_SIZE {
                verified.clear();
            }
            verified.insert(digest);
        }
        ok
    }

    /// One line for logs and `check-config`.
    pub fn describe(&self) -> String {
        match &self.file {
            None => "plain HTTP, no authentication".to_owned(),
            Some(f) => format!(
                "{} (TLS: {}, basic auth users: {})",
                f.display(),
                if self.tls.is_some() { "on" } else { "off" },
                self.users.len()
            ),
        }
    }
}

/// `Basic base64(user:password)`.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // Standard base64 with padding (RFC 4648), as browsers and Prometheus send it.
    let decoded =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The TLS settings of `file`, certificates and keys read (paths relative to its directory).
fn server_config(tls: RawTls, file: &Path) -> Result<ServerConfig, WebConfigError> {
    let err = |k: &str, message: String| key_error(file, k, message);
    let (certs, private) = identity(&tls, file)?;
    let versions = protocol_versions(&tls, file)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err("min_version", e.to_string()))?;
    let auth_type = tls.client_auth_type.unwrap_or(ClientAuth::NoClientCert);
    let builder = match auth_type {
        ClientAuth::NoClientCert => {
            if tls.client_ca_file.is_some() {
                return Err(err("client_ca_file", "is set but client_auth_type is NoClientCert: set client_auth_type to RequireAndVerifyClientCert or VerifyClientCertIfGiven".into()));
            }
            builder.with_no_client_auth()
        }
        ClientAuth::RequireAndVerifyClientCert | ClientAuth::VerifyClientCertIfGiven => {
            let roots = client_roots(&tls, file, auth_type)?;
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            if auth_type == ClientAuth::VerifyClientCertIfGiven {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| err("client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            return Err(err(
                "client_auth_type",
                format!(
                    "{auth_type:?} (unverified client certificates) is not supported: use RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file"
                ),
            ));
        }
    };
    let mut config = builder
        .with_single_cert(certs, private)
        .map_err(|e| err("key_file", format!("does not match cert_file: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An error under `tls_server_config.KEY` of the web configuration `file`.
fn key_error(file: &Path, key: &str, message: String) -> WebConfigError {
    WebConfigError {
        file: file.to_owned(),
        key: format!("tls_server_config.{key}"),
        message,
    }
}

/// `p` as written, or taken from the web configuration file's directory.
fn resolve(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// The server's certificate chain and private key.
fn identity(
    tls: &RawTls,
    file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), WebConfigError> {
    let err = |k: &str, message: String| key_error(file, k, message);
    let cert_file = tls
        .cert_file
        .as_deref()
        .map(|p| resolve(file, p))
        .ok_or_else(|| {
            err(
                "cert_file",
                "missing: the server's certificate (PEM)".to_owned(),
            )
        })?;
    let key_file = tls
        .key_file
        .as_deref()
        .map(|p| resolve(file, p))
        .ok_or_else(|| {
            err(
                "key_file",
                "missing: the server's private key (PEM)".to_owned(),
            )
        })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| err("cert_file", format!("{}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(err(
            "cert_file",
            format!("{}: no certificate", cert_file.display()),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(&key_file)
        .map_err(|e| err("key_file", format!("{}: {e}", key_file.display())))?;
    Ok((certs, private))
}

/// The TLS versions between `min_version` and `max_version` (1.2 and 1.3 by default).
fn protocol_versions(
    tls: &RawTls,
    file: &Path,
) -> Result<Vec<&'static SupportedProtocolVersion>, WebConfigError> {
    let min = tls.min_version.unwrap_or(TlsVersion::TLS12);
    let max = tls.max_version.unwrap_or(TlsVersion::TLS13);
    if min > max {
        return Err(key_error(
            file,
            "min_version",
            "is above max_version".into(),
        ));
    }
    Ok([(TlsVersion::TLS12, &TLS12), (TlsVersion::TLS13, &TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, p)| p)
        .collect())
}

/// The CAs that sign the client certificates `auth_type` verifies.
fn client_roots(
    tls: &RawTls,
    file: &Path,
    auth_type: ClientAuth,
) -> Result<Arc<RootCertStore>, WebConfigError> {
    let err = |k: &str, message: String| key_error(file, k, message);
    let ca = tls.client_ca_file.as_deref().map(|p| resolve(file, p)).ok_or_else(|| {
        err(
            "client_ca_file",
            format!("missing: client_auth_type {auth_type:?} needs the CA that signs client certificates"),
        )
    })?;
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| err("client_ca_file", format!("{}: {e}", ca.display())))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(err(
            "client_ca_file",
            format!("{}: no usable certificate", ca.display()),
        ));
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers_are_decoded() {
        assert_eq!(
            parse_basic("Basic cHJvbWV0aGV1czpzM2NyZXQ="),
            Some(("prometheus".into(), "s3cret".into()))
        );
        assert_eq!(parse_basic("Basic YTo="), Some(("a".into(), "".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic ***"), None);
        assert_eq!(parse_basic("Basic YWJj"), None, "no colon");
    }

    #[tokio::test]
    async fn wrong_users_and_passwords_are_refused_and_right_ones_cached() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yml");
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(&file, format!("basic_auth_users:\n  prometheus: {hash}\n")).unwrap();
        let web = Arc::new(WebConfig::load(&file).unwrap());
        assert!(web.needs_auth());
        assert!(web.authorize(Some("Basic cHJvbWV0aGV1czpzM2NyZXQ=")).await);
        assert!(
            web.authorize(Some("Basic cHJvbWV0aGV1czpzM2NyZXQ=")).await,
            "cached"
        );
        // prometheus:wrong, nobody:s3cret, none
        assert!(!web.authorize(Some("Basic cHJvbWV0aGV1czp3cm9uZw==")).await);
        assert!(!web.authorize(Some("Basic bm9ib2R5OnMzY3JldA==")).await);
        assert!(!web.authorize(None).await);
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yml");
        for (text, key) in [
            ("basic_auth_users:\n  a: plain\n", "basic_auth_users.a"),
            (
                "tls_server_config:\n  key_file: k.pem\n",
                "tls_server_config.cert_file",
            ),
            (
                "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
                "tls_server_config.cert_file",
            ),
            ("unknown: 1\n", "yaml"),
            (
                "http_server_config:\n  headers:\n    Set-Cookie: x\n",
                "http_server_config.headers.Set-Cookie",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = WebConfig::load(&file).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
