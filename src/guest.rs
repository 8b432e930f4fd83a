//! How a Terraform resource names its Proxmox guest: the vmid in its values (bpg's `vm_id`,
//! Telmate's `vmid`, and the ids that carry it), shared by the plan (attribution looks a
//! change up by it) and the state pull of the unmanaged-guest check.

use serde_json::Value;

/// A vmid written as a number or a string (Telmate's id is `<node>/qemu/<vmid>`, bpg's is
/// the vmid); 0 is none.
pub fn vmid_of(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.rsplit('/').next()?.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

/// A resource type that may hold a Proxmox guest: the Proxmox providers' (`proxmox_`) and
/// the test simulator's (`pvesim_`).
pub fn is_guest_type(resource_type: &str) -> bool {
    resource_type.starts_with("proxmox_") || resource_type.starts_with("pvesim_")
}

/// The vmid of a Proxmox guest resource from its values (`vm_id`, else `vmid`); `None` for
/// resources of other providers.
pub fn guest_vmid(resource_type: &str, values: &Value) -> Option<u32> {
    if !is_guest_type(resource_type) {
        return None;
    }
    vmid_of(values.get("vm_id").or_else(|| values.get("vmid"))?)
}
