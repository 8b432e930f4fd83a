use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new("/etc/t/config.toml"), text)
}

#[test]
fn defaults_merge_into_each_environment() {
    let c = load(
        r#"
        [defaults]
        timeout = "2m"
        env = { A = "1" }
        [environments.prod]
        dir = "envs/prod"
        interval = "6h"
        env = { B = "2" }
        [environments.lab]
        dir = "/srv/lab"
        cron = "0 3 * * *"
        timeout = "10m"
        "#,
    )
    .unwrap();
    let prod = &c.environments["prod"];
    assert_eq!(prod.dir, PathBuf::from("/etc/t/envs/prod"));
    assert_eq!(prod.timeout, Duration::from_secs(120));
    assert_eq!(
        prod.schedule,
        Schedule::Interval(Duration::from_secs(6 * 3600))
    );
    assert_eq!(prod.env.len(), 2);
    let lab = &c.environments["lab"];
    assert_eq!(lab.timeout, Duration::from_secs(600));
    assert!(matches!(lab.schedule, Schedule::Cron { .. }));
    assert_eq!(lab.kill_grace, Duration::from_secs(30));
}

#[test]
fn errors_name_the_key_and_what_was_expected() {
    let e = load("[environments.prod]\ndir = \"x\"\ninterval = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("environments.prod.interval") && e.contains("duration"),
        "{e}"
    );
    let e = load("[environments.prod]\ndir = \"x\"\ncolour = 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field") && e.contains("colour"), "{e}");
    let e = load("[environments.prod]\ndir = \"x\"\ninterval = \"1h\"\ncron = \"* * * * *\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("either interval or cron"), "{e}");
    let e = load("[environments.prod]\ndir = \"x\"\ncron = \"99 * * * *\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("environments.prod.cron"), "{e}");
    let e = load("[environments.prod]\ninterval = \"1h\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("environments.prod.dir"), "{e}");
    let e = load("[environments.\"pr od\"]\ndir = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("letters, digits"), "{e}");
}

#[test]
fn proxmox_settings_are_checked_and_default_to_the_shortest_interval() {
    let base = "[environments.prod]\ndir = \"x\"\ninterval = \"6h\"\n[environments.lab]\ndir = \"y\"\ninterval = \"30m\"\n";
    let with = |p: &str| load(&format!("{base}[proxmox]\n{p}"));
    let ok = "api_url = \"https://pve1.lan:8006/\"\ntoken_id = \"tfdrift@pve!mon\"\ntoken_secret_file = \"pve-token\"\n";
    let c = with(&format!(
        "{ok}[proxmox.ignore]\nvmids = [\"9000-9099\", \"150\"]\ntags = [\"Unmanaged\"]\n"
    ))
    .unwrap();
    let p = c.proxmox.unwrap();
    assert_eq!(p.api_url, "https://pve1.lan:8006");
    assert_eq!(p.interval, Duration::from_secs(1800));
    assert_eq!(
        p.token_secret,
        TokenSecret::File(PathBuf::from("/etc/t/pve-token"))
    );
    assert_eq!(p.ignore.vmids, [(9000, 9099), (150, 150)]);
    assert_eq!(p.ignore.tags, ["unmanaged"]);
    assert!(!p.insecure && !p.allow_empty_inventory);

    for (text, key, words) in [
        (
            "api_url = \"http://pve:8006\"\ntoken_id = \"a@pve!b\"\ntoken_secret_file = \"f\"",
            "proxmox.api_url",
            "https://",
        ),
        (
            "api_url = \"https://pve\"\ntoken_id = \"a@pve!b=secret\"\ntoken_secret_file = \"f\"",
            "proxmox.token_id",
            "without the secret",
        ),
        (
            "api_url = \"https://pve\"\ntoken_id = \"a@pve!b\"",
            "proxmox.token_secret_file",
            "missing",
        ),
        (
            "api_url = \"https://pve\"\ntoken_id = \"a@pve!b\"\ntoken_secret_file = \"f\"\ntoken_secret_env = \"V\"",
            "proxmox.token_secret_file",
            "not both",
        ),
        (
            "api_url = \"https://pve\"\ntoken_id = \"a@pve!b\"\ntoken_secret_file = \"f\"\ninsecure = true\nca_file = \"ca.pem\"",
            "proxmox.insecure",
            "ca_file",
        ),
        (
            "api_url = \"https://pve\"\ntoken_id = \"a@pve!b\"\ntoken_secret_file = \"f\"\n[proxmox.ignore]\nvmids = [\"200-100\"]",
            "proxmox.ignore.vmids[0]",
            "range",
        ),
    ] {
        let e = with(text).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(words), "{text}: {e}");
    }
    let e = with(&format!("{ok}verify = false\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field") && e.contains("verify"), "{e}");
}

#[test]
fn the_external_url_and_terraform_tokens_are_checked_at_load() {
    let env = "[environments.lab]\ndir = \"ws\"\n";
    let ok = load(&format!(
        "[web]\nexternal_url = \"https://monitoring.lan:9847/\"\n{env}"
    ))
    .unwrap();
    assert_eq!(
        ok.web.external_url.as_deref(),
        Some("https://monitoring.lan:9847"),
        "kept without the trailing slash"
    );
    for bad in [
        "monitoring.lan:9847",
        "https://",
        "https://x/a b",
        "ftp://x",
        // What the Telegram template would not link: no alert may lose its link.
        "https://x/\\u202e",
        "https://münchen.lan",
        "https://x/a?b=1",
        "https://user@x",
        "https://x/&amp;",
    ] {
        let e = load(&format!("[web]\nexternal_url = \"{bad}\"\n{env}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("web.external_url"), "{bad}: {e}");
    }
    let long = format!("https://x/{}", "a".repeat(200));
    assert!(
        load(&format!("[web]\nexternal_url = \"{long}\"\n{env}")).is_err(),
        "at most 200 characters"
    );
    assert!(
        load(&format!(
            "[web]\nexternal_url = \"https://[::1]:9847/tfdrift\"\n{env}"
        ))
        .is_ok()
    );
    let proxmox = "[proxmox]\napi_url = \"https://pve1:8006\"\ntoken_id = \"tfdrift@pve!m\"\ntoken_secret_env = \"S\"\n";
    let p = load(&format!("{proxmox}{env}")).unwrap().proxmox.unwrap();
    assert!(p.attribution, "on by default");
    assert_eq!(p.attribution_interval, Duration::from_secs(10));
    assert!(p.events, "change signals on by default");
    assert_eq!(p.digest_interval, Duration::from_secs(30));
    let e = load(&format!("{proxmox}digest_interval = \"0s\"\n{env}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxmox.digest_interval"), "{e}");
    let e = load(&format!(
        "{proxmox}terraform_token_ids = [\"terraform@pve!apply\", \"terraform\"]\n{env}"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("proxmox.terraform_token_ids[1]"), "{e}");
    let e = load(&format!("{proxmox}attribution_interval = \"2h\"\n{env}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxmox.attribution_interval"), "{e}");
}
