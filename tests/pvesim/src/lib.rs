//! A simulated Proxmox VE API for tfdrift-exporter's tests (never shipped in the exporter).
//!
//! It imitates the documented subset the exporter and the test provider use, with the
//! response shapes of docs/proxmox.md: token authentication
//! (`Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`, else `401 authentication
//! failure`), `GET /api2/json/cluster/resources?type=vm`, guest config read and update, guest
//! create and delete, token deletion, the cluster log, the nodes and their task lists, and a
//! token's effective privileges ([`audit`]). Everything is served over HTTPS with a CA it
//! generates.
//! A test (or a person, with curl) changes a guest "by hand" through the same API.

#![allow(
    clippy::disallowed_methods,
    reason = "test support: a simulator and a provider process, not the exporter's runtime"
)]

pub mod audit;
pub mod client;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A guest: a VM (`qemu`) or a container (`lxc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    pub vmid: u32,
    /// `qemu` or `lxc`.
    #[serde(rename = "type")]
    pub kind: String,
    pub node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub memory: i64,
    pub cores: i64,
    pub tags: String,
    pub template: bool,
    pub status: String,
    /// When it was created through the API (unix time; 0: given at start). A VM's config
    /// says it in `meta` (`creation-qemu=...,ctime=...`), as qemu-server writes it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ctime: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Guest {
    /// The config's `digest`: Proxmox's is the SHA-1 of the config file; this one is a hash
    /// of the simulated config in the same shape (40 hex digits), changing with every edit.
    pub fn digest(&self) -> String {
        use std::hash::{Hash, Hasher};
        let config = (
            &self.name,
            self.memory,
            self.cores,
            &self.tags,
            &self.kind,
            &self.node,
        );
        (0..3u8)
            .map(|salt| {
                let mut h = std::hash::DefaultHasher::new();
                (salt, &config).hash(&mut h);
                format!("{:016x}", h.finish())
            })
            .collect::<String>()[..40]
            .to_owned()
    }
}

/// The simulated cluster.
#[derive(Debug, Default)]
pub struct Cluster {
    pub guests: Mutex<BTreeMap<u32, Guest>>,
    /// Valid tokens, as `USER@REALM!TOKENID=SECRET`.
    pub tokens: Mutex<BTreeSet<String>>,
    /// Tokens (`USER@REALM!TOKENID`) whose role lacks `Sys.Syslog`, as the built-in
    /// `PVEAuditor`: they read only their own cluster log entries.
    pub without_syslog: Mutex<BTreeSet<String>>,
    pub audit: audit::Audit,
    /// TCP connections accepted so far (what a client's pooling saves).
    pub connections: std::sync::atomic::AtomicUsize,
    /// The `Host` headers requests came with.
    pub hosts: Mutex<BTreeSet<String>>,
}

/// The CA and the server certificate of one simulator.
pub struct Certificates {
    pub ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A certificate and its key given as PEM files (from a CA of the caller's); `ca_pem` is
/// then the certificate itself, for callers that pin it.
pub fn certificates_from_files(cert: &Path, key: &Path) -> anyhow::Result<Certificates> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let cert_pem = std::fs::read_to_string(cert)?;
    Ok(Certificates {
        cert: CertificateDer::from_pem_slice(cert_pem.as_bytes())?,
        key: PrivateKeyDer::from_pem_file(key)?,
        ca_pem: cert_pem,
    })
}

/// A CA and a certificate signed by it for 127.0.0.1 and localhost.
pub fn certificates() -> anyhow::Result<Certificates> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pvesim test CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Certificates {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, value: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// Proxmox answers errors with a reason phrase of its own ("401 authentication failure").
fn fail(status: StatusCode, reason: &'static str) -> Response<Body> {
    let mut r = reply(status, json!({ "data": null, "message": reason }));
    r.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(reason.as_bytes()));
    r
}

impl Cluster {
    /// The acting token (`USER@REALM!TOKENID`) of an authenticated request.
    fn authorised(&self, req: &Request<Incoming>) -> Option<String> {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())?;
        let token = header.strip_prefix("PVEAPIToken=")?;
        if !self.tokens.lock().unwrap().contains(token) {
            return None;
        }
        Some(token.split_once('=').map_or(token, |(id, _)| id).to_owned())
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(host) = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            self.hosts.lock().unwrap().insert(host.to_owned());
        }
        let Some(actor) = self.authorised(&req) else {
            return fail(StatusCode::UNAUTHORIZED, "authentication failure");
        };
        let syslog = !self.without_syslog.lock().unwrap().contains(&actor);
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return fail(StatusCode::BAD_REQUEST, "body too large"),
        };
        let params: BTreeMap<String, Value> = serde_json::from_slice(&body).unwrap_or_default();
        let segments: Vec<&str> = path.trim_start_matches("/api2/json/").split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["cluster", "resources"]) => {
                let only_vm = query.split('&').any(|p| p == "type=vm");
                let guests = self.guests.lock().unwrap();
                let data: Vec<Value> = guests
                    .values()
                    .filter(|_| only_vm || query.is_empty())
                    .map(|g| {
                        let mut v = json!({
                            "id": format!("{}/{}", g.kind, g.vmid), "vmid": g.vmid, "type": g.kind,
                            "node": g.node, "status": g.status, "template": u8::from(g.template),
                            "maxmem": g.memory * 1024 * 1024, "maxcpu": g.cores,
                        });
                        if let Some(name) = &g.name {
                            v["name"] = json!(name);
                        }
                        if !g.tags.is_empty() {
                            v["tags"] = json!(g.tags);
                        }
                        v
                    })
                    .collect();
                reply(StatusCode::OK, json!({ "data": data }))
            }
            (_, ["nodes", node, kind @ ("qemu" | "lxc"), vmid, "config"]) => {
                let Ok(vmid) = vmid.parse::<u32>() else {
                    return fail(StatusCode::BAD_REQUEST, "invalid vmid");
                };
                let mut guests = self.guests.lock().unwrap();
                let Some(g) = guests
                    .get_mut(&vmid)
                    .filter(|g| g.node == *node && g.kind == *kind)
                else {
                    let dir = if *kind == "qemu" {
                        "qemu-server"
                    } else {
                        "lxc"
                    };
                    return fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        leak(format!(
                            "Configuration file 'nodes/{node}/{dir}/{vmid}.conf' does not exist"
                        )),
                    );
                };
                match method {
                    Method::GET => {
                        let name_key = if g.kind == "lxc" { "hostname" } else { "name" };
                        let mut data =
                            json!({ "memory": g.memory, "cores": g.cores, "tags": g.tags });
                        if let Some(name) = &g.name {
                            data[name_key] = json!(name);
                        }
                        if g.kind == "qemu" && g.ctime > 0 {
                            data["meta"] = json!(format!("creation-qemu=8.1.2,ctime={}", g.ctime));
                        }
                        data["digest"] = json!(g.digest());
                        reply(StatusCode::OK, json!({ "data": data }))
                    }
                    Method::PUT | Method::POST => {
                        apply(g, &params);
                        let post = method == Method::POST;
                        self.audit
                            .config_changed(&actor, node, kind, vmid, post, &params);
                        reply(StatusCode::OK, json!({ "data": null }))
                    }
                    _ => fail(StatusCode::NOT_IMPLEMENTED, "Method not implemented"),
                }
            }
            (&Method::POST, ["nodes", node, kind @ ("qemu" | "lxc")]) => {
                let Some(vmid) = params
                    .get("vmid")
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                else {
                    return fail(StatusCode::BAD_REQUEST, "vmid: property is missing");
                };
                let mut guests = self.guests.lock().unwrap();
                if guests.contains_key(&(vmid as u32)) {
                    return fail(StatusCode::INTERNAL_SERVER_ERROR, "VM already exists");
                }
                let mut g = Guest {
                    vmid: vmid as u32,
                    kind: kind.to_string(),
                    node: node.to_string(),
                    name: None,
                    memory: 512,
                    cores: 1,
                    tags: String::new(),
                    template: false,
                    status: "running".into(),
                    ctime: audit::now(),
                };
                apply(&mut g, &params);
                self.audit.created(&actor, node, kind, g.vmid);
                guests.insert(g.vmid, g);
                reply(
                    StatusCode::OK,
                    json!({ "data": format!("UPID:{node}:0000:create:{vmid}:root@pam:") }),
                )
            }
            (&Method::DELETE, ["nodes", node, kind @ ("qemu" | "lxc"), vmid]) => {
                let removed = vmid
                    .parse::<u32>()
                    .ok()
                    .and_then(|id| self.guests.lock().unwrap().remove(&id));
                match removed {
                    Some(g) => {
                        self.audit.destroyed(&actor, node, kind, g.vmid);
                        reply(StatusCode::OK, json!({ "data": "UPID:delete" }))
                    }
                    None => fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Configuration file does not exist",
                    ),
                }
            }
            (&Method::GET, ["cluster", "log"]) => {
                match self.audit.log_answer(&query, &actor, syslog) {
                    Ok(answer) => reply(StatusCode::OK, answer),
                    Err(_) => fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "malformed JSON string (in the cluster log)",
                    ),
                }
            }
            (&Method::GET, ["nodes"]) => {
                let mut nodes: BTreeSet<String> = ["pve1".to_owned()].into();
                nodes.extend(self.guests.lock().unwrap().values().map(|g| g.node.clone()));
                let data: Vec<Value> = nodes
                    .iter()
                    .map(|n| json!({ "node": n, "status": "online" }))
                    .collect();
                reply(StatusCode::OK, json!({ "data": data }))
            }
            (&Method::GET, ["nodes", node, "tasks"]) => {
                reply(StatusCode::OK, self.audit.tasks_answer(node, &query))
            }
            // The token's effective privileges on a path (`?path=/`).
            (&Method::GET, ["access", "permissions"]) => {
                let mut privileges = json!({ "VM.Audit": 1, "Sys.Audit": 1 });
                if syslog {
                    privileges["Sys.Syslog"] = json!(1);
                }
                reply(StatusCode::OK, json!({ "data": { "/": privileges } }))
            }
            // DELETE /access/users/{userid}/token/{tokenid}: revokes a token.
            (&Method::DELETE, ["access", "users", user, "token", token]) => {
                let prefix = format!("{user}!{token}=");
                self.tokens
                    .lock()
                    .unwrap()
                    .retain(|t| !t.starts_with(&prefix));
                reply(StatusCode::OK, json!({ "data": null }))
            }
            _ => fail(StatusCode::NOT_IMPLEMENTED, "Method not implemented"),
        }
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn apply(g: &mut Guest, params: &BTreeMap<String, Value>) {
    let int = |v: &Value| v.as_i64().or_else(|| v.as_str()?.parse().ok());
    for (key, value) in params {
        match key.as_str() {
            "name" | "hostname" => g.name = value.as_str().map(String::from),
            "memory" => g.memory = int(value).unwrap_or(g.memory),
            "cores" => g.cores = int(value).unwrap_or(g.cores),
            "tags" => g.tags = value.as_str().unwrap_or_default().to_owned(),
            "template" => g.template = int(value) == Some(1),
            "status" => g.status = value.as_str().unwrap_or("unknown").to_owned(),
            _ => {}
        }
    }
}

/// A running simulator.
pub struct Running {
    pub address: SocketAddr,
    pub cluster: Arc<Cluster>,
    pub ca_pem: String,
}

/// Serves `cluster` over HTTPS on `listen` until the process ends.
pub async fn serve(
    listen: &str,
    cluster: Arc<Cluster>,
    certs: Certificates,
) -> anyhow::Result<(Running, tokio::task::JoinHandle<()>)> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![certs.cert.clone()], certs.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let shared = cluster.clone();
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let cluster = shared.clone();
            cluster
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let cluster = cluster.clone();
                    async move { Ok::<_, std::convert::Infallible>(cluster.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((
        Running {
            address,
            cluster,
            ca_pem: certs.ca_pem,
        },
        handle,
    ))
}

/// Writes `text` to `path`, creating its directory.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}
