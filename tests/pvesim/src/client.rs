//! A client of the (simulated) Proxmox VE API, used by the test provider and by tests that
//! change guests "by hand". Its errors use the wording of the real Go providers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// How to reach the API.
#[derive(Clone)]
pub struct Client {
    url: String,
    host: String,
    port: u16,
    token: String,
    tls: Arc<ClientConfig>,
}

impl Client {
    /// `api_url` like `https://127.0.0.1:8006`; `token` as `USER@REALM!ID=SECRET`; without a
    /// CA file no certificate is trusted.
    pub fn new(api_url: &str, token: &str, ca_file: Option<&Path>) -> Result<Client, String> {
        let url = api_url.trim_end_matches('/').to_owned();
        let Some(rest) = url.strip_prefix("https://") else {
            return Err(format!("api_url {url:?} must start with https://"));
        };
        let hostport = rest.split('/').next().unwrap_or_default();
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(8006)),
            None => (hostport.to_owned(), 8006),
        };
        let mut roots = RootCertStore::empty();
        if let Some(file) = ca_file {
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("ca_file {}: {e}", file.display()))?;
            for cert in certs.flatten() {
                let _ = roots.add(cert);
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            url,
            host,
            port,
            token: token.to_owned(),
            tls: Arc::new(tls),
        })
    }

    /// One request to `/api2/json{path}`; `Err` carries the Go-worded error text.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Json>,
    ) -> Result<(u16, Json), String> {
        let url = format!("{}/api2/json{path}", self.url);
        let verb = match method {
            "GET" => "Get",
            "PUT" => "Put",
            "POST" => "Post",
            _ => "Delete",
        };
        let addr = format!("{}:{}", self.host, self.port);
        let io = |e: std::io::Error| -> String {
            match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    format!("{verb} \"{url}\": dial tcp {addr}: connect: connection refused")
                }
                std::io::ErrorKind::TimedOut => {
                    format!("{verb} \"{url}\": dial tcp {addr}: i/o timeout")
                }
                _ => format!("{verb} \"{url}\": {e}"),
            }
        };
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
            .await
            .map_err(|_| format!("{verb} \"{url}\": dial tcp {addr}: i/o timeout"))?
            .map_err(io)?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| format!("{verb} \"{url}\": {e}"))?;
        let mut tls = TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
                format!("{verb} \"{url}\": tls: failed to verify certificate: x509: certificate signed by unknown authority")
            } else {
                format!("{verb} \"{url}\": tls: {text}")
            }
        })?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} /api2/json{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: PVEAPIToken={}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        );
        tls.write_all(request.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        match tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut raw)).await {
            Err(_) => return Err(format!("{verb} \"{url}\": context deadline exceeded")),
            // A peer that closes without close_notify still sent the whole answer.
            Ok(Err(e)) if raw.is_empty() => return Err(io(e)),
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status_line = head.lines().next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let reason = status_line.splitn(3, ' ').nth(2).unwrap_or_default();
        let json: Json = serde_json::from_str(body).unwrap_or(Json::Null);
        if status == 401 || status == 403 {
            return Err(format!("{status} {reason}"));
        }
        Ok((status, json))
    }
}
