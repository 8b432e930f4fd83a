//! Which guests a Terraform state manages, and how each Proxmox provider names and imports
//! them (docs/proxmox.md):
//!
//! | provider | types | vmid attribute | import id |
//! |---|---|---|---|
//! | bpg/proxmox | `proxmox_virtual_environment_vm`, `_container` (and `proxmox_vm`, `proxmox_container`) | `vm_id` | `<node>/<vmid>` |
//! | telmate/proxmox | `proxmox_vm_qemu`, `proxmox_lxc` | `vmid` | `<node>/qemu/<vmid>`, `<node>/lxc/<vmid>` |

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::{Guest, GuestKind};
use crate::guest::vmid_of;

/// A Terraform provider for Proxmox VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Provider {
    #[serde(rename = "bpg/proxmox")]
    Bpg,
    #[serde(rename = "telmate/proxmox")]
    Telmate,
}

impl Provider {
    pub fn source(self) -> &'static str {
        match self {
            Provider::Bpg => "bpg/proxmox",
            Provider::Telmate => "telmate/proxmox",
        }
    }

    /// The resource type this provider uses for a guest of `kind`.
    pub fn resource_type(self, kind: GuestKind) -> &'static str {
        match (self, kind) {
            (Provider::Bpg, GuestKind::Qemu) => "proxmox_virtual_environment_vm",
            (Provider::Bpg, GuestKind::Lxc) => "proxmox_virtual_environment_container",
            (Provider::Telmate, GuestKind::Qemu) => "proxmox_vm_qemu",
            (Provider::Telmate, GuestKind::Lxc) => "proxmox_lxc",
        }
    }

    /// The id `terraform import` (and an `import` block) takes for `guest`.
    pub fn import_id(self, guest: &Guest) -> String {
        match self {
            Provider::Bpg => format!("{}/{}", guest.node, guest.vmid),
            Provider::Telmate => format!("{}/{}/{}", guest.node, guest.kind.as_str(), guest.vmid),
        }
    }

    /// The provider of a resource type that holds a Proxmox guest, if it is one.
    pub fn of_type(resource_type: &str) -> Option<Provider> {
        match resource_type {
            "proxmox_virtual_environment_vm"
            | "proxmox_virtual_environment_container"
            | "proxmox_vm"
            | "proxmox_container" => Some(Provider::Bpg),
            "proxmox_vm_qemu" | "proxmox_lxc" => Some(Provider::Telmate),
            _ => None,
        }
    }
}

/// The guests one state manages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managed {
    pub vmids: BTreeSet<u32>,
    /// How many guest resources of each provider the state holds.
    pub providers: BTreeMap<Provider, usize>,
}

impl Managed {
    /// The provider most of the state's guests use.
    pub fn main_provider(&self) -> Option<Provider> {
        most_used(&self.providers)
    }
}

/// The provider with the highest count (bpg on a tie).
pub fn most_used(counts: &BTreeMap<Provider, usize>) -> Option<Provider> {
    counts
        .iter()
        .max_by_key(|(p, n)| (**n, std::cmp::Reverse(**p)))
        .map(|(p, _)| *p)
}

#[derive(Debug, Deserialize)]
struct State {
    version: Option<u64>,
    #[serde(default)]
    resources: Vec<Resource>,
}

#[derive(Debug, Deserialize)]
struct Resource {
    #[serde(default)]
    mode: String,
    #[serde(rename = "type", default)]
    resource_type: String,
    #[serde(default)]
    instances: Vec<Instance>,
}

#[derive(Debug, Deserialize)]
struct Instance {
    #[serde(default)]
    attributes: Option<Attributes>,
}

/// Only the attributes that name the guest; the rest of the state is skipped.
#[derive(Debug, Deserialize)]
struct Attributes {
    #[serde(default)]
    vm_id: Option<Value>,
    #[serde(default)]
    vmid: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
}

/// The guests the output of `terraform state pull` manages. Empty output (no state yet)
/// manages nothing.
pub fn managed_guests(state: &[u8]) -> Result<Managed, String> {
    let mut managed = Managed::default();
    if state.iter().all(u8::is_ascii_whitespace) {
        return Ok(managed);
    }
    let state: State = serde_json::from_slice(state)
        .map_err(|e| format!("the output of state pull is not a state document: {e}"))?;
    match state.version {
        Some(4) => {}
        Some(v) => return Err(format!("state format version {v} is not supported (4 is)")),
        None => return Err("the output of state pull has no format version".into()),
    }
    for resource in &state.resources {
        if resource.mode != "managed" {
            continue;
        }
        let provider = Provider::of_type(&resource.resource_type);
        // Besides the providers' guest types, the test simulator's (`pvesim_vm`, `pvesim_lxc`).
        if provider.is_none() && !resource.resource_type.starts_with("pvesim_") {
            continue;
        }
        if let Some(provider) = provider {
            *managed.providers.entry(provider).or_default() += 1;
        }
        for attributes in resource
            .instances
            .iter()
            .filter_map(|i| i.attributes.as_ref())
        {
            // Another type that holds a guest (the test simulator's): either spelling.
            let own = match provider {
                Some(Provider::Bpg) => &attributes.vm_id,
                Some(Provider::Telmate) => &attributes.vmid,
                None if attributes.vm_id.is_some() => &attributes.vm_id,
                None => &attributes.vmid,
            };
            let vmid = own
                .as_ref()
                .and_then(vmid_of)
                .or_else(|| attributes.id.as_ref().and_then(vmid_of));
            if let Some(vmid) = vmid {
                managed.vmids.insert(vmid);
            }
        }
    }
    Ok(managed)
}

/// A Terraform resource name for `guest`: its name made a valid identifier, else
/// `vm_<vmid>` / `ct_<vmid>`.
pub fn resource_name(guest: &Guest) -> String {
    let fallback = || match guest.kind {
        GuestKind::Qemu => format!("vm_{}", guest.vmid),
        GuestKind::Lxc => format!("ct_{}", guest.vmid),
    };
    let Some(name) = &guest.name else {
        return fallback();
    };
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        return fallback();
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// `import` blocks that adopt `guests` with `provider`, ready for
/// `terraform plan -generate-config-out=generated.tf`. Names that two guests would share get
/// the vmid appended.
pub fn import_blocks(guests: &[Guest], provider: Provider) -> String {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for g in guests {
        *seen.entry(resource_name(g)).or_default() += 1;
    }
    let mut out = String::new();
    for g in guests {
        let mut name = resource_name(g);
        if seen[&name] > 1 {
            name = format!("{name}_{}", g.vmid);
        }
        let label = g
            .name
            .as_deref()
            .unwrap_or("(no name: its node may be offline)");
        out.push_str(&format!(
            "# {} {} {label} on {}\n",
            g.kind.as_str(),
            g.vmid,
            if g.node.is_empty() {
                "an unknown node"
            } else {
                &g.node
            }
        ));
        if g.node.is_empty() {
            out.push_str("# the API did not say which node holds it: fill in the node below\n");
        }
        out.push_str(&format!(
            "import {{\n  to = {}.{name}\n  id = \"{}\"\n}}\n\n",
            provider.resource_type(g.kind),
            provider.import_id(g)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(vmid: u32, name: Option<&str>, kind: GuestKind) -> Guest {
        Guest {
            created_by: None,
            created_at: None,
            vmid,
            name: name.map(str::to_owned),
            node: "pve1".into(),
            kind,
            status: None,
            tags: Vec::new(),
        }
    }

    #[test]
    fn both_providers_and_both_spellings_are_read() {
        let state = br#"{"version":4,"terraform_version":"1.11.4","resources":[
          {"mode":"managed","type":"proxmox_vm_qemu","name":"a","instances":[{"attributes":{"id":"pve1/qemu/101","vmid":101,"target_node":"pve1"}}]},
          {"mode":"managed","type":"proxmox_lxc","name":"b","instances":[{"attributes":{"id":"pve1/lxc/102","vmid":0}}]},
          {"mode":"managed","type":"proxmox_virtual_environment_vm","name":"c","instances":[{"attributes":{"id":"103","vm_id":103,"node_name":"pve1"}}]},
          {"mode":"managed","type":"proxmox_virtual_environment_container","name":"d","instances":[{"index_key":0,"attributes":{"id":"104","vm_id":104}},{"index_key":1,"attributes":{"id":"105","vm_id":105}}]},
          {"mode":"managed","type":"proxmox_vm","name":"e","instances":[{"attributes":{"vm_id":106}}]},
          {"mode":"data","type":"proxmox_virtual_environment_vm","name":"f","instances":[{"attributes":{"vm_id":900}}]},
          {"mode":"managed","type":"terraform_data","name":"g","instances":[{"attributes":{"id":"107"}}]}
        ]}"#;
        let m = managed_guests(state).unwrap();
        assert_eq!(
            m.vmids.into_iter().collect::<Vec<_>>(),
            [101, 102, 103, 104, 105, 106]
        );
        assert_eq!(m.providers[&Provider::Bpg], 3);
        assert_eq!(m.providers[&Provider::Telmate], 2);
    }

    #[test]
    fn no_state_manages_nothing_and_garbage_is_an_error() {
        assert_eq!(managed_guests(b"\n").unwrap(), Managed::default());
        assert!(managed_guests(b"{\"version\":3}").is_err());
        assert!(managed_guests(b"Error: no").is_err());
    }

    #[test]
    fn import_blocks_use_each_providers_id_format() {
        let guests = [
            guest(150, Some("Web 2"), GuestKind::Qemu),
            guest(151, None, GuestKind::Lxc),
            guest(152, Some("web_2"), GuestKind::Qemu),
        ];
        let bpg = import_blocks(&guests, Provider::Bpg);
        assert!(
            bpg.contains("to = proxmox_virtual_environment_vm.web_2_150\n  id = \"pve1/150\""),
            "{bpg}"
        );
        assert!(
            bpg.contains("to = proxmox_virtual_environment_container.ct_151\n  id = \"pve1/151\""),
            "{bpg}"
        );
        let telmate = import_blocks(&guests[1..2], Provider::Telmate);
        assert!(
            telmate.contains("to = proxmox_lxc.ct_151\n  id = \"pve1/lxc/151\""),
            "{telmate}"
        );
        assert_eq!(
            resource_name(&guest(1, Some("9lives"), GuestKind::Qemu)),
            "_9lives"
        );
    }
}
