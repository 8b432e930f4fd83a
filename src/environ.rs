//! The environment variables terraform reads that would change what the exporter's
//! commands do while its argv, its logs and its read-only promise say otherwise
//! (terraform's "Environment Variables" documentation):
//!
//! - `TF_CLI_ARGS` and `TF_CLI_ARGS_<command>` add arguments to every command (or to
//!   `plan`, `init`, `show`, ...): `-refresh=false`, `-lock=false`, `-destroy`,
//!   `-target=...`. `TF_CLI_ARGS="-destroy"` made every scan fail to parse its flags.
//! - `TF_REATTACH_PROVIDERS` makes terraform use provider processes started elsewhere (a
//!   debugging aid) instead of the ones it would start.
//!
//! Every terraform the exporter runs gets none of them: the exporter's own environment's
//! are removed (and said once at start), an environment's `env` that sets one is refused at
//! load, and an `env_files` line that sets one fails the scan with `config`. Variables
//! that are inputs, not arguments, stay: `TF_VAR_*`, `TF_WORKSPACE`, `TF_CLI_CONFIG_FILE`,
//! `TF_TOKEN_*`, `TF_PLUGIN_CACHE_DIR`, `TF_LOG`.

use std::ffi::OsString;

/// Why `name` may not reach terraform, when it may not.
pub fn forbidden(name: &str) -> Option<&'static str> {
    if name == "TF_CLI_ARGS" || name.starts_with("TF_CLI_ARGS_") {
        Some(
            "it adds arguments to terraform's commands (the plan would not be the one the exporter runs and logs)",
        )
    } else if name == "TF_REATTACH_PROVIDERS" {
        Some("it makes terraform use provider processes started elsewhere")
    } else {
        None
    }
}

/// The forbidden variables of the exporter's own environment.
pub fn inherited() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_str().is_some_and(|n| forbidden(n).is_some()))
        .collect()
}

/// Says once, at start, which of the exporter's own variables terraform will not get.
pub fn say_inherited() {
    for name in inherited() {
        tracing::warn!(
            variable = %name.to_string_lossy(),
            "ignored: terraform never gets this variable of the exporter's environment ({})",
            forbidden(&name.to_string_lossy()).unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_from_the_environment_are_forbidden_inputs_are_not() {
        for name in [
            "TF_CLI_ARGS",
            "TF_CLI_ARGS_plan",
            "TF_CLI_ARGS_init",
            "TF_REATTACH_PROVIDERS",
        ] {
            assert!(forbidden(name).is_some(), "{name}");
        }
        for name in [
            "TF_VAR_memory",
            "TF_WORKSPACE",
            "TF_CLI_CONFIG_FILE",
            "TF_LOG",
            "TF_CLI_ARGSX",
        ] {
            assert!(forbidden(name).is_none(), "{name}");
        }
    }
}
