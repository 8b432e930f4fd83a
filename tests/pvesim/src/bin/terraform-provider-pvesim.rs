//! `terraform-provider-pvesim`: a Terraform provider (plugin protocol 6, tf-provider crate)
//! whose resources `pvesim_vm` and `pvesim_lxc` live in the simulated Proxmox API, so that
//! the real terraform sees real changes made outside Terraform and real API failures. Its
//! error texts use the wording of the real Proxmox providers (Go): `401 authentication
//! failure`, `dial tcp ...: connect: connection refused`, `tls: failed to verify
//! certificate: x509: certificate signed by unknown authority`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty, ValueNumber, ValueString};
use tf_provider::{
    AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider, Resource, map, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// How to reach the API, set by `configure`.
#[derive(Clone)]
struct Api {
    url: String,
    host: String,
    port: u16,
    token: String,
    tls: Arc<ClientConfig>,
}

type Shared = Arc<Mutex<Option<Api>>>;

impl Api {
    /// One request; `Err` carries the Go-worded error text.
    async fn call(
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

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct GuestState<'a> {
    #[serde(borrow = "'a")]
    id: ValueString<'a>,
    vmid: ValueNumber,
    #[serde(borrow = "'a")]
    node: ValueString<'a>,
    #[serde(borrow = "'a")]
    name: ValueString<'a>,
    memory: ValueNumber,
    cores: ValueNumber,
    #[serde(borrow = "'a")]
    tags: ValueString<'a>,
}

struct Guest {
    /// `qemu` or `lxc`.
    kind: &'static str,
    api: Shared,
}

fn string(v: &ValueString<'_>) -> Option<String> {
    match v {
        Value::Value(s) => Some(s.to_string()),
        _ => None,
    }
}

fn number(v: &ValueNumber) -> Option<i64> {
    match v {
        Value::Value(n) => Some(*n),
        _ => None,
    }
}

impl Guest {
    fn api(&self, diags: &mut Diagnostics) -> Option<Api> {
        let api = self.api.lock().unwrap().clone();
        if api.is_none() {
            diags.root_error_short("the pvesim provider is not configured");
        }
        api
    }

    fn path(&self, s: &GuestState<'_>) -> String {
        format!(
            "/nodes/{}/{}/{}",
            string(&s.node).unwrap_or_default(),
            self.kind,
            number(&s.vmid).unwrap_or_default()
        )
    }

    fn body(&self, s: &GuestState<'_>) -> Json {
        let name_key = if self.kind == "lxc" {
            "hostname"
        } else {
            "name"
        };
        let mut body = json!({ "vmid": number(&s.vmid), "memory": number(&s.memory), "cores": number(&s.cores) });
        if let Some(name) = string(&s.name) {
            body[name_key] = json!(name);
        }
        body["tags"] = json!(string(&s.tags).unwrap_or_default());
        body
    }

    fn id(&self, s: &GuestState<'_>) -> ValueString<'static> {
        Value::Value(Cow::Owned(format!(
            "{}/{}/{}",
            string(&s.node).unwrap_or_default(),
            self.kind,
            number(&s.vmid).unwrap_or_default()
        )))
    }

    /// A failed call, reported the way the real providers do.
    fn error(&self, diags: &mut Diagnostics, what: &str, s: &GuestState<'_>, message: String) {
        diags.root_error(
            format!(
                "error {what} {} {}: {message}",
                self.kind,
                number(&s.vmid).unwrap_or_default()
            ),
            message,
        );
    }
}

#[async_trait]
impl Resource for Guest {
    type State<'a> = Value<GuestState<'a>>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let attr = |t: AttributeType, c: AttributeConstraint| Attribute {
            attr_type: t,
            description: Description::plain(""),
            constraint: c,
            ..Default::default()
        };
        Some(Schema {
            version: 0,
            block: Block {
                version: 0,
                description: Description::plain("A guest of the simulated Proxmox VE"),
                attributes: map! {
                    "id" => attr(AttributeType::String, AttributeConstraint::Computed),
                    "vmid" => attr(AttributeType::Number, AttributeConstraint::Required),
                    "node" => attr(AttributeType::String, AttributeConstraint::Required),
                    "name" => attr(AttributeType::String, AttributeConstraint::Optional),
                    "memory" => attr(AttributeType::Number, AttributeConstraint::Required),
                    "cores" => attr(AttributeType::Number, AttributeConstraint::Required),
                    "tags" => attr(AttributeType::String, AttributeConstraint::Optional),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, _diags: &mut Diagnostics, _config: Self::State<'a>) -> Option<()> {
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Value::Value(mut s) = state else {
            return Some((state, private));
        };
        let api = self.api(diags)?;
        match api
            .call("GET", &format!("{}/config", self.path(&s)), None)
            .await
        {
            Err(e) => {
                self.error(diags, "reading", &s, e);
                None
            }
            Ok((500, body))
                if body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("does not exist")) =>
            {
                Some((Value::Null, private))
            }
            Ok((200, body)) => {
                let data = &body["data"];
                let name = data["name"].as_str().or(data["hostname"].as_str());
                s.name = name
                    .map(|n| Value::Value(Cow::Owned(n.to_owned())))
                    .unwrap_or(Value::Null);
                s.memory = data["memory"]
                    .as_i64()
                    .map(Value::Value)
                    .unwrap_or(Value::Null);
                s.cores = data["cores"]
                    .as_i64()
                    .map(Value::Value)
                    .unwrap_or(Value::Null);
                s.tags = match data["tags"].as_str() {
                    Some(t) if !t.is_empty() => Value::Value(Cow::Owned(t.to_owned())),
                    _ if s.tags.is_null() => Value::Null,
                    _ => Value::Value(Cow::Borrowed("")),
                };
                Some((Value::Value(s), private))
            }
            Ok((status, body)) => {
                self.error(
                    diags,
                    "reading",
                    &s,
                    format!("{status} {}", body["message"].as_str().unwrap_or("")),
                );
                None
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let planned = match proposed {
            Value::Value(mut s) => {
                s.id = Value::Unknown;
                Value::Value(s)
            }
            other => other,
        };
        Some((planned, Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut replace = Vec::new();
        let planned = match (prior, proposed) {
            (Value::Value(p), Value::Value(mut s)) => {
                if p.vmid != s.vmid {
                    replace.push(AttributePath::new("vmid"));
                }
                if p.node != s.node {
                    replace.push(AttributePath::new("node"));
                }
                s.id = if replace.is_empty() {
                    p.id
                } else {
                    Value::Unknown
                };
                Value::Value(s)
            }
            (_, proposed) => proposed,
        };
        Some((planned, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Value::Value(mut s) = planned else {
            return Some((planned, private));
        };
        let api = self.api(diags)?;
        let path = format!(
            "/nodes/{}/{}",
            string(&s.node).unwrap_or_default(),
            self.kind
        );
        match api.call("POST", &path, Some(self.body(&s))).await {
            Ok((200, _)) => {
                s.id = self.id(&s);
                Some((Value::Value(s), private))
            }
            Ok((status, body)) => {
                self.error(
                    diags,
                    "creating",
                    &s,
                    format!("{status} {}", body["message"].as_str().unwrap_or("")),
                );
                None
            }
            Err(e) => {
                self.error(diags, "creating", &s, e);
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Value::Value(s) = &planned else {
            return Some((planned, private));
        };
        let api = self.api(diags)?;
        match api
            .call(
                "PUT",
                &format!("{}/config", self.path(s)),
                Some(self.body(s)),
            )
            .await
        {
            Ok((200, _)) => Some((planned, private)),
            Ok((status, body)) => {
                self.error(
                    diags,
                    "updating",
                    s,
                    format!("{status} {}", body["message"].as_str().unwrap_or("")),
                );
                None
            }
            Err(e) => {
                self.error(diags, "updating", s, e);
                None
            }
        }
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let Value::Value(s) = &state else {
            return Some(());
        };
        let api = self.api(diags)?;
        match api.call("DELETE", &self.path(s), None).await {
            Ok(_) => Some(()),
            Err(e) => {
                self.error(diags, "deleting", s, e);
                None
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct ProviderConfig<'a> {
    #[serde(borrow = "'a")]
    api_url: ValueString<'a>,
    #[serde(borrow = "'a")]
    token: ValueString<'a>,
    #[serde(borrow = "'a")]
    ca_file: ValueString<'a>,
}

#[derive(Default)]
struct PveSim {
    api: Shared,
}

#[async_trait]
impl Provider for PveSim {
    type Config<'a> = ProviderConfig<'a>;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let attr = |c: AttributeConstraint, sensitive: bool| Attribute {
            attr_type: AttributeType::String,
            description: Description::plain(""),
            constraint: c,
            sensitive,
            ..Default::default()
        };
        Some(Schema {
            version: 0,
            block: Block {
                description: Description::plain("The simulated Proxmox VE API"),
                attributes: map! {
                    "api_url" => attr(AttributeConstraint::Required, false),
                    "token" => attr(AttributeConstraint::Required, true),
                    "ca_file" => attr(AttributeConstraint::Optional, false),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(
        &self,
        _diags: &mut Diagnostics,
        _config: Self::Config<'a>,
    ) -> Option<()> {
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let url = string(&config.api_url)
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let Some(rest) = url.strip_prefix("https://") else {
            diags.root_error_short(format!("api_url {url:?} must start with https://"));
            return None;
        };
        let hostport = rest.split('/').next().unwrap_or_default();
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(8006)),
            None => (hostport.to_owned(), 8006),
        };
        let mut roots = RootCertStore::empty();
        if let Some(file) = string(&config.ca_file) {
            let certs = match CertificateDer::pem_file_iter(&file) {
                Ok(certs) => certs,
                Err(e) => {
                    diags.root_error_short(format!("ca_file {file:?}: {e}"));
                    return None;
                }
            };
            for cert in certs.flatten() {
                let _ = roots.add(cert);
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        *self.api.lock().unwrap() = Some(Api {
            url,
            host,
            port,
            token: string(&config.token).unwrap_or_default(),
            tls: Arc::new(tls),
        });
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        Some(map! {
            "vm" => Guest { kind: "qemu", api: self.api.clone() },
            "lxc" => Guest { kind: "lxc", api: self.api.clone() },
        })
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        Some(map! {})
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    serve("pvesim", PveSim::default()).await
}
