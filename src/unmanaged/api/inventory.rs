//! The inventory answer (`GET /cluster/resources?type=vm`): guests only, templates left
//! out, numbers as Proxmox sends them (sometimes strings or booleans).

use serde::{Deserialize, Deserializer};

use super::{Guest, GuestKind};

/// One entry of `cluster/resources?type=vm`.
#[derive(Debug, Deserialize)]
struct Resource {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, deserialize_with = "number")]
    vmid: Option<u64>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, deserialize_with = "number")]
    template: Option<u64>,
    #[serde(default)]
    tags: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    data: Option<Vec<Resource>>,
}

/// Proxmox sends numbers, and sometimes numbers as strings or booleans.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Bool(b) => Some(u64::from(b)),
        _ => None,
    })
}

/// Parses the inventory answer: guests only (templates left out), sorted by vmid.
pub fn parse_inventory(body: &[u8]) -> Result<Vec<Guest>, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("the inventory answer is not the expected JSON: {e}"))?;
    let data = answer
        .data
        .ok_or("the inventory answer has no \"data\" list")?;
    let mut guests = Vec::new();
    for r in data {
        let kind = match r.kind.as_str() {
            "qemu" => GuestKind::Qemu,
            "lxc" => GuestKind::Lxc,
            _ => continue,
        };
        if r.template.unwrap_or(0) != 0 {
            continue;
        }
        let Some(vmid) = r.vmid.and_then(|v| u32::try_from(v).ok()) else {
            return Err(format!(
                "an inventory entry of type {} has no valid vmid",
                r.kind
            ));
        };
        guests.push(Guest {
            created_by: None,
            created_at: None,
            vmid,
            name: r.name.filter(|n| !n.is_empty()),
            node: r.node.unwrap_or_default(),
            kind,
            status: r.status,
            tags: r
                .tags
                .unwrap_or_default()
                .split([';', ',', ' '])
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        });
    }
    guests.sort_by_key(|g| g.vmid);
    Ok(guests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_leaves_out_templates_and_keeps_nameless_guests() {
        let body = br#"{"data":[
            {"id":"qemu/100","vmid":100,"type":"qemu","node":"pve1","name":"web","status":"running","template":0,"tags":"prod;web"},
            {"id":"qemu/9000","vmid":9000,"type":"qemu","node":"pve1","name":"tpl","template":1},
            {"id":"lxc/150","vmid":"150","type":"lxc","node":"pve2","status":"unknown"},
            {"id":"storage/pve1/local","type":"storage","node":"pve1"}
        ]}"#;
        let guests = parse_inventory(body).unwrap();
        assert_eq!(guests.len(), 2);
        assert_eq!(guests[0].tags, ["prod", "web"]);
        assert_eq!(guests[1].vmid, 150);
        assert_eq!(guests[1].name, None);
        assert_eq!(guests[1].kind, GuestKind::Lxc);
        assert_eq!(guests[1].status.as_deref(), Some("unknown"));
    }

    #[test]
    fn malformed_answers_are_errors() {
        assert!(parse_inventory(b"<html>").is_err());
        assert!(parse_inventory(b"{\"errors\":{}}").is_err());
        assert!(parse_inventory(br#"{"data":[{"type":"qemu","node":"a"}]}"#).is_err());
    }
}
