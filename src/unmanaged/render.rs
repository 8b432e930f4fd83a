//! The unmanaged-guest check as people read it (`tfdrift-exporter unmanaged`).

use super::Unmanaged;

/// A text table for people.
pub fn render_text(u: &Unmanaged) -> String {
    let mut out = String::new();
    if let Some(e) = &u.error {
        out.push_str(&format!(
            "unmanaged-guest check failed ({}): {}\n",
            e.reason, e.summary
        ));
        return out;
    }
    if u.guests.is_empty() {
        out.push_str(&format!(
            "no unmanaged guest: every one of the {} guests is in a Terraform state{}\n",
            u.inventory,
            if u.ignored > 0 {
                format!(" or ignored ({})", u.ignored)
            } else {
                String::new()
            }
        ));
        return out;
    }
    out.push_str(&format!(
        "{} guest(s) that no Terraform state manages ({} in the inventory, {} ignored):\n\n",
        u.guests.len(),
        u.inventory,
        u.ignored
    ));
    out.push_str(&format!(
        "{:<8} {:<5} {:<24} {:<12} {}\n",
        "VMID", "KIND", "NAME", "NODE", "STATUS"
    ));
    for g in &u.guests {
        out.push_str(&format!(
            "{:<8} {:<5} {:<24} {:<12} {}\n",
            g.vmid,
            g.kind.as_str(),
            g.name.as_deref().unwrap_or("-"),
            g.node,
            g.status.as_deref().unwrap_or("-")
        ));
    }
    out
}
