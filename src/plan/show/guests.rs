//! Which Proxmox guest a resource change holds: its vmid, read alone from its values (the
//! map of the guests each environment manages, for the change signals).

use serde::Deserialize;
use serde_json::Value;

use super::ResourceChange;

/// Only the attributes that name a guest; the rest of a value is skipped.
#[derive(Deserialize)]
struct GuestIds {
    #[serde(default)]
    vm_id: Option<Value>,
    #[serde(default)]
    vmid: Option<Value>,
}

impl ResourceChange<'_> {
    /// The vmid of the Proxmox guest this resource holds (before the change, else after).
    pub(super) fn guest(&self) -> Option<u32> {
        if !crate::guest::is_guest_type(&self.resource_type) || self.deposed.is_some() {
            return None;
        }
        [self.change.before, self.change.after]
            .into_iter()
            .flatten()
            .filter_map(|raw| {
                serde_json::from_str::<Option<GuestIds>>(raw.get())
                    .ok()
                    .flatten()
            })
            .find_map(|ids| {
                ids.vm_id
                    .or(ids.vmid)
                    .as_ref()
                    .and_then(crate::guest::vmid_of)
            })
    }
}
