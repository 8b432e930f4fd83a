//! The client's connections: TCP, TLS and HTTP/1.1 kept alive between requests and polls,
//! a few idle ones at most (a closed one is replaced by the caller).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::{CheckError, CheckReason, Client, tls_failure};

/// Why a GET got no answer.
#[derive(Debug)]
pub(super) enum SendError {
    Http(String),
    /// The answer was longer than this many bytes.
    TooLarge(usize),
}

/// Idle connections a client keeps.
const MAX_IDLE: usize = 4;

impl Client {
    /// A new connection to the API: TCP, then TLS, then HTTP/1.1 kept alive.
    pub(super) async fn connect(&self, url: &str) -> Result<Connection, CheckError> {
        let connectivity =
            |what: String| CheckError::new(CheckReason::Connectivity, format!("GET {url}: {what}"));
        let address = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect(address.as_str())
            .await
            .map_err(|e| connectivity(format!("cannot connect to {address}: {e}")))?;
        let name = ServerName::try_from(self.host.trim_matches(['[', ']']).to_owned())
            .map_err(|e| connectivity(format!("{:?} is not a host name: {e}", self.host)))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| connectivity(tls_failure(&e)))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| connectivity(format!("HTTP: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, driver })
    }

    /// One GET on `connection`: the status, its reason phrase and the body (at most `limit`
    /// bytes).
    pub(super) async fn send(
        &self,
        connection: &mut Connection,
        url: &str,
        limit: usize,
    ) -> Result<(hyper::StatusCode, String, Bytes), SendError> {
        let path = url.trim_start_matches(&self.api_url);
        let request = Request::get(path)
            .header(hyper::header::HOST, self.host_header.as_str())
            .header(hyper::header::AUTHORIZATION, self.authorization.as_str())
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("tfdrift-exporter/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| SendError::Http(e.to_string()))?;
        connection
            .sender
            .ready()
            .await
            .map_err(|e| SendError::Http(format!("HTTP: {e}")))?;
        let answer = connection
            .sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Http(format!("HTTP: {e}")))?;
        let status = answer.status();
        // Proxmox says why in the reason phrase ("authentication failure", "No ticket").
        let phrase = answer
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
        let body = Limited::new(answer.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    SendError::TooLarge(limit)
                } else {
                    SendError::Http(format!("reading the answer: {e}"))
                }
            })?
            .to_bytes();
        Ok((status, phrase, body))
    }

    /// An idle connection, if one is still open.
    pub(super) fn idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(connection) = idle.pop() {
            if !connection.sender.is_closed() {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps `connection` for the next request (a few at most: requests run concurrently
    /// only when several nodes are asked at once).
    pub(super) fn keep(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if !connection.sender.is_closed() && idle.len() < MAX_IDLE {
            idle.push(connection);
        }
    }
}

/// An HTTP/1.1 connection to the API; its driver task ends with it.
pub(super) struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
