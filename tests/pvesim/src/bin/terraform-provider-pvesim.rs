//! `terraform-provider-pvesim`: a Terraform provider (plugin protocol 6, tf-provider crate)
//! whose resources `pvesim_vm` and `pvesim_lxc` live in the simulated Proxmox API, so that
//! the real terraform sees real changes made outside Terraform and real API failures. Its
//! error texts use the wording of the real Proxmox providers (Go): `401 authentication
//! failure`, `dial tcp ...: connect: connection refused`, `tls: failed to verify
//! certificate: x509: certificate signed by unknown authority`.

#![allow(
    clippy::disallowed_methods,
    reason = "test support: a simulator and a provider process, not the exporter's runtime"
)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pvesim::client::Client;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty, ValueNumber, ValueString};
use tf_provider::{
    AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider, Resource, map, serve,
};

type Shared = Arc<Mutex<Option<Client>>>;

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
    fn api(&self, diags: &mut Diagnostics) -> Option<Client> {
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

    /// The guest's configuration: `Some(None)` when it is gone from the API, `None` after a
    /// failure (reported as a diagnostic).
    async fn fetch(&self, diags: &mut Diagnostics, s: &GuestState<'_>) -> Option<Option<Json>> {
        let api = self.api(diags)?;
        match api
            .call("GET", &format!("{}/config", self.path(s)), None)
            .await
        {
            Err(e) => {
                self.error(diags, "reading", s, e);
                None
            }
            Ok((500, body))
                if body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("does not exist")) =>
            {
                Some(None)
            }
            Ok((200, body)) => Some(Some(body["data"].clone())),
            Ok((status, body)) => {
                let message = format!("{status} {}", body["message"].as_str().unwrap_or(""));
                self.error(diags, "reading", s, message);
                None
            }
        }
    }

    /// `Some` for a 200 answer; any other answer or failure becomes a diagnostic.
    fn succeeded(
        &self,
        diags: &mut Diagnostics,
        what: &str,
        s: &GuestState<'_>,
        done: Result<(u16, Json), String>,
    ) -> Option<()> {
        match done {
            Ok((200, _)) => Some(()),
            Ok((status, body)) => {
                let message = format!("{status} {}", body["message"].as_str().unwrap_or(""));
                self.error(diags, what, s, message);
                None
            }
            Err(e) => {
                self.error(diags, what, s, e);
                None
            }
        }
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
        let Some(data) = self.fetch(diags, &s).await? else {
            return Some((Value::Null, private));
        };
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
        let done = api.call("POST", &path, Some(self.body(&s))).await;
        self.succeeded(diags, "creating", &s, done)?;
        s.id = self.id(&s);
        Some((Value::Value(s), private))
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
        let done = api
            .call(
                "PUT",
                &format!("{}/config", self.path(s)),
                Some(self.body(s)),
            )
            .await;
        self.succeeded(diags, "updating", s, done)?;
        Some((planned, private))
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

/// The state of a guest in the shape of bpg/proxmox's `proxmox_virtual_environment_vm` (a
/// subset: `vm_id`, `node_name`, `name`; import id `<node>/<vmid>`), for tests of the
/// unmanaged-guest check and of the import blocks it prints.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct BpgState<'a> {
    #[serde(borrow = "'a")]
    id: ValueString<'a>,
    vm_id: ValueNumber,
    #[serde(borrow = "'a")]
    node_name: ValueString<'a>,
    #[serde(borrow = "'a")]
    name: ValueString<'a>,
}

impl BpgState<'_> {
    /// The same guest in the simulator's own shape, to share its API calls.
    fn guest(&self) -> GuestState<'static> {
        GuestState {
            id: Value::Null,
            vmid: self.vm_id,
            node: string(&self.node_name)
                .map(|n| Value::Value(Cow::Owned(n)))
                .unwrap_or(Value::Null),
            name: string(&self.name)
                .map(|n| Value::Value(Cow::Owned(n)))
                .unwrap_or(Value::Null),
            memory: Value::Value(512),
            cores: Value::Value(1),
            tags: Value::Null,
        }
    }
}

/// A guest resource shaped like bpg/proxmox's; served when the binary is named
/// `terraform-provider-proxmox` (loaded through `dev_overrides` for `bpg/proxmox`).
struct BpgGuest(Guest);

#[async_trait]
impl Resource for BpgGuest {
    type State<'a> = Value<BpgState<'a>>;
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
                description: Description::plain("A guest, in the shape of bpg/proxmox"),
                attributes: map! {
                    "id" => attr(AttributeType::String, AttributeConstraint::Computed),
                    "vm_id" => attr(AttributeType::Number, AttributeConstraint::Required),
                    "node_name" => attr(AttributeType::String, AttributeConstraint::Required),
                    "name" => attr(AttributeType::String, AttributeConstraint::Optional),
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
        let g = s.guest();
        let Some(data) = self.0.fetch(diags, &g).await? else {
            return Some((Value::Null, private));
        };
        s.name = data["name"]
            .as_str()
            .or(data["hostname"].as_str())
            .map(|n| Value::Value(Cow::Owned(n.to_owned())))
            .unwrap_or(Value::Null);
        s.id = Value::Value(Cow::Owned(number(&s.vm_id).unwrap_or_default().to_string()));
        Some((Value::Value(s), private))
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
                if p.vm_id != s.vm_id {
                    replace.push(AttributePath::new("vm_id"));
                }
                if p.node_name != s.node_name {
                    replace.push(AttributePath::new("node_name"));
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
        let api = self.0.api(diags)?;
        let g = s.guest();
        let path = format!(
            "/nodes/{}/{}",
            string(&g.node).unwrap_or_default(),
            self.0.kind
        );
        let done = api.call("POST", &path, Some(self.0.body(&g))).await;
        self.0.succeeded(diags, "creating", &g, done)?;
        s.id = Value::Value(Cow::Owned(number(&s.vm_id).unwrap_or_default().to_string()));
        Some((Value::Value(s), private))
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
        let api = self.0.api(diags)?;
        let g = s.guest();
        let name_key = if self.0.kind == "lxc" {
            "hostname"
        } else {
            "name"
        };
        let body = json!({ name_key: string(&s.name) });
        let done = api
            .call("PUT", &format!("{}/config", self.0.path(&g)), Some(body))
            .await;
        self.0.succeeded(diags, "updating", &g, done)?;
        Some((planned, private))
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
        let api = self.0.api(diags)?;
        let g = s.guest();
        match api.call("DELETE", &self.0.path(&g), None).await {
            Ok(_) => Some(()),
            Err(e) => {
                self.0.error(diags, "deleting", &g, e);
                None
            }
        }
    }

    /// bpg's import id: `<node>/<vmid>`.
    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let parsed = id
            .split_once('/')
            .and_then(|(node, vmid)| Some((node.to_owned(), vmid.parse::<i64>().ok()?)));
        let Some((node, vmid)) = parsed else {
            diags.root_error_short(format!("invalid import id {id:?}: expected <node>/<vmid>"));
            return None;
        };
        Some((
            Value::Value(BpgState {
                id: Value::Value(Cow::Owned(vmid.to_string())),
                vm_id: Value::Value(vmid),
                node_name: Value::Value(Cow::Owned(node)),
                name: Value::Null,
            }),
            Default::default(),
        ))
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
    /// Served as `bpg/proxmox` (resource types `proxmox_virtual_environment_*`).
    as_bpg: bool,
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
        let url = string(&config.api_url).unwrap_or_default();
        let token = string(&config.token).unwrap_or_default();
        let ca_file = string(&config.ca_file);
        match Client::new(&url, &token, ca_file.as_deref().map(std::path::Path::new)) {
            Ok(client) => *self.api.lock().unwrap() = Some(client),
            Err(e) => {
                diags.root_error_short(e);
                return None;
            }
        }
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        if self.as_bpg {
            return Some(map! {
                "virtual_environment_vm" => BpgGuest(Guest { kind: "qemu", api: self.api.clone() }),
                "virtual_environment_container" => BpgGuest(Guest { kind: "lxc", api: self.api.clone() }),
            });
        }
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
    // Named terraform-provider-proxmox (a copy made by the tests), it stands in for bpg/proxmox.
    let as_bpg = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a).file_name().map(|n| {
                n.to_string_lossy()
                    .starts_with("terraform-provider-proxmox")
            })
        })
        .unwrap_or(false);
    let name = if as_bpg { "proxmox" } else { "pvesim" };
    serve(
        name,
        PveSim {
            api: Shared::default(),
            as_bpg,
        },
    )
    .await
}
