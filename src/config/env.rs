//! `TFDRIFT_<SECTION>__<KEY>` overrides, each variable checked on its own before figment
//! merges them, so that every error names the variable that caused it: an empty value, a
//! path that names no key (`TFDRIFT_ENVIRONMENTS__../X__DIR`), a value that does not fit
//! its key.

use std::ffi::OsString;

use super::ConfigError;
use super::validate::valid_name;

/// One `TFDRIFT_` variable: its name and the dotted key it sets (`defaults.interval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Override {
    pub(super) var: String,
    pub(super) key: String,
}

/// The `TFDRIFT_` variables among `vars`, each checked: a name that makes a key path
/// (segments of lowercase letters, digits and `_`; an environment's name as the store
/// allows it) and a value that is not empty.
pub(super) fn overrides(
    prefix: &str,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut found = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else {
            if name.to_string_lossy().starts_with(prefix) {
                return Err(refused(
                    &name.to_string_lossy(),
                    "its name is not valid UTF-8",
                ));
            }
            continue;
        };
        let Some(path) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(value) = value.to_str() else {
            return Err(refused(name, "its value is not valid UTF-8"));
        };
        if value.trim().is_empty() {
            return Err(refused(
                name,
                "it is set but empty; unset it to keep the configuration file's value",
            ));
        }
        let key = key_path(path).map_err(|why| refused(name, &why))?;
        found.push(Override {
            var: name.to_owned(),
            key,
        });
    }
    Ok(found)
}

/// `ENVIRONMENTS__LAB__DIR` -> `environments.lab.dir`, or why it names no key.
fn key_path(path: &str) -> Result<String, String> {
    let segments: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    let shape =
        "a name like TFDRIFT_SECTION__KEY (TFDRIFT_ENVIRONMENTS__NAME__KEY for an environment)";
    for (i, segment) in segments.iter().enumerate() {
        let environment_name = i == 1 && segments[0] == "environments";
        let ok = if environment_name {
            valid_name(segment)
        } else {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !ok {
            return Err(match environment_name {
                true => format!(
                    "{segment:?} is not an environment name (letters, digits, '-' and '_', at most 64; lowercase in a variable)"
                ),
                false => format!("{segment:?} is not a key: {shape}"),
            });
        }
    }
    Ok(segments.join("."))
}

fn refused(var: &str, message: &str) -> ConfigError {
    ConfigError::Variable {
        var: var.to_owned(),
        key: None,
        message: message.to_owned(),
    }
}

/// The variable that set `key`, or a table above it (`defaults` for `defaults.interval`):
/// the one an error about `key` is blamed on.
pub(super) fn setting<'a>(overrides: &'a [Override], key: &str) -> Option<&'a Override> {
    overrides
        .iter()
        .filter(|o| {
            key == o.key
                || key.starts_with(&format!("{}.", o.key))
                || o.key.starts_with(&format!("{key}."))
        })
        .max_by_key(|o| o.key.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn error(list: &[(&str, &str)]) -> String {
        overrides("TFDRIFT_", vars(list)).unwrap_err().to_string()
    }

    #[test]
    fn each_variable_names_a_key() {
        let found = overrides(
            "TFDRIFT_",
            vars(&[
                ("HOME", "/root"),
                ("TFDRIFT_STORAGE__PATH", "/var/lib/x"),
                ("TFDRIFT_ENVIRONMENTS__LAB__DIR", "/srv/lab"),
            ]),
        )
        .unwrap();
        let keys: Vec<&str> = found.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["storage.path", "environments.lab.dir"]);
        assert_eq!(found[0].var, "TFDRIFT_STORAGE__PATH");
    }

    #[test]
    fn an_empty_value_is_an_error_naming_the_variable() {
        let e = error(&[("TFDRIFT_STORAGE__PATH", "")]);
        assert!(
            e.contains("environment variable TFDRIFT_STORAGE__PATH") && e.contains("empty"),
            "{e}"
        );
        assert!(error(&[("TFDRIFT_STORAGE__PATH", "  ")]).contains("empty"));
    }

    #[test]
    fn a_path_that_names_no_key_is_an_error_naming_the_variable() {
        let e = error(&[("TFDRIFT_ENVIRONMENTS__../X__DIR", "/tmp")]);
        assert!(
            e.contains("TFDRIFT_ENVIRONMENTS__../X__DIR") && e.contains("\"../x\""),
            "{e}"
        );
        let e = error(&[("TFDRIFT_DEFAULTS____INTERVAL", "1h")]);
        assert!(e.contains("is not a key"), "{e}");
        let e = error(&[("TFDRIFT_DEFAULTS__INTER.VAL", "1h")]);
        assert!(e.contains("is not a key"), "{e}");
    }

    #[test]
    fn an_error_about_a_key_is_blamed_on_the_variable_that_set_it() {
        let o = overrides(
            "TFDRIFT_",
            vars(&[
                ("TFDRIFT_DEFAULTS__TIMEOUT", "9d"),
                ("TFDRIFT_ENVIRONMENTS__LAB__DIR", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            setting(&o, "defaults.timeout").unwrap().var,
            "TFDRIFT_DEFAULTS__TIMEOUT"
        );
        assert_eq!(
            setting(&o, "environments.lab").unwrap().var,
            "TFDRIFT_ENVIRONMENTS__LAB__DIR"
        );
        assert!(setting(&o, "environments.lab.timeout").is_none());
        assert!(setting(&o, "storage.path").is_none());
    }
}
