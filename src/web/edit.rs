//! Config edits from the web page. The file is edited as a TOML document (toml_edit keeps the
//! comments and layout a person wrote), the result is validated by the same
//! [`config::parse`](crate::config::parse) the gateway starts with, and only a valid result is
//! written, atomically. An invalid edit changes nothing and returns every error with its path.

use crate::config::{self, ConfigError};
use std::collections::BTreeMap;
use std::path::Path;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// The `[[sources]]` keys the device form edits (every transport's; blank = absent).
pub const SOURCE_KEYS: &[&str] = &[
    "id",
    "protocol",
    "transport",
    "listen",
    "connect",
    "port",
    "baud",
    "data_bits",
    "parity",
    "stop_bits",
    "flow_control",
    "encoding",
    "receive_timeout",
    "backoff_min",
    "backoff_max",
    "reopen_after",
    "max_body",
];
const INT_KEYS: &[&str] = &["baud", "data_bits", "stop_bits", "max_body"];

/// Why an edit was refused.
#[derive(Debug, Clone)]
pub enum EditError {
    /// The edited config does not validate; nothing was written.
    Invalid(Vec<ConfigError>),
    /// The file could not be read, parsed as TOML or written.
    Io(String),
    NotFound(String),
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::Invalid(errors) => {
                write!(f, "{}", config::ConfigErrors(errors.clone()))
            }
            EditError::Io(m) | EditError::NotFound(m) => f.write_str(m),
        }
    }
}

fn load_doc(path: &Path) -> Result<DocumentMut, EditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EditError::Io(format!("cannot read {}: {e}", path.display())))?;
    text.parse::<DocumentMut>()
        .map_err(|e| EditError::Io(format!("{} is not valid TOML: {e}", path.display())))
}

/// Validate the edited document and write it atomically.
fn commit(path: &Path, doc: &DocumentMut) -> Result<config::Config, EditError> {
    let text = doc.to_string();
    let config = config::parse(&text).map_err(|e| EditError::Invalid(e.0))?;
    super::write_atomic(path, text.as_bytes())
        .map_err(|e| EditError::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(config)
}

fn sources(doc: &mut DocumentMut) -> Result<&mut ArrayOfTables, EditError> {
    if doc.get("sources").is_none() {
        doc.insert("sources", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    doc.get_mut("sources")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| EditError::Io("sources is not a list of [[sources]] tables".into()))
}

fn index_of(list: &ArrayOfTables, id: &str) -> Option<usize> {
    list.iter()
        .position(|t| t.get("id").and_then(Item::as_str) == Some(id))
}

/// Add a source (`original` = None) or change the one with id `original`, from form fields.
/// Blank fields remove their key, so switching transport leaves no stray keys.
pub fn save_source(
    path: &Path,
    original: Option<&str>,
    form: &BTreeMap<String, String>,
) -> Result<config::Config, EditError> {
    let mut doc = load_doc(path)?;
    let list = sources(&mut doc)?;
    let index = match original {
        Some(id) => Some(
            index_of(list, id)
                .ok_or_else(|| EditError::NotFound(format!("no source with id \"{id}\"")))?,
        ),
        None => None,
    };
    let mut fresh = Table::new();
    let table = match index {
        Some(i) => list.get_mut(i).expect("index found above"),
        None => &mut fresh,
    };
    for key in SOURCE_KEYS {
        match form.get(*key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => {
                table.remove(key);
            }
            Some(v) => {
                let item = match v.parse::<i64>() {
                    Ok(n) if INT_KEYS.contains(key) => value(n),
                    _ => value(v),
                };
                table.insert(key, item);
            }
        }
    }
    if let Some(enabled) = form.get("enabled") {
        table.insert("enabled", value(enabled == "on" || enabled == "true"));
    } else if index.is_none() {
        table.insert("enabled", value(true));
    }
    if index.is_none() {
        list.push(fresh);
    }
    commit(path, &doc)
}

/// Turn a source on or off.
pub fn set_enabled(path: &Path, id: &str, enabled: bool) -> Result<config::Config, EditError> {
    let mut doc = load_doc(path)?;
    let list = sources(&mut doc)?;
    let i = index_of(list, id)
        .ok_or_else(|| EditError::NotFound(format!("no source with id \"{id}\"")))?;
    list.get_mut(i)
        .expect("index found above")
        .insert("enabled", value(enabled));
    commit(path, &doc)
}

/// The `[dhis2]` edit from the DHIS2 page. A new secret is written to `secret_file` (mode 0600)
/// and the config names the file; the secret itself is never in the config, a log or a page.
pub struct Dhis2Edit {
    pub url: String,
    pub org_unit: String,
    /// `token` or `basic`.
    pub auth: String,
    pub username: String,
    /// Blank keeps the current secret.
    pub secret: String,
}

pub fn save_dhis2(
    path: &Path,
    data_dir: &Path,
    edit: &Dhis2Edit,
) -> Result<config::Config, EditError> {
    let mut doc = load_doc(path)?;
    if doc.get("dhis2").is_none() {
        doc.insert("dhis2", Item::Table(Table::new()));
    }
    let t = doc
        .get_mut("dhis2")
        .and_then(Item::as_table_mut)
        .ok_or_else(|| EditError::Io("dhis2 is not a table".into()))?;
    let set = |t: &mut Table, k: &str, v: &str| {
        if v.trim().is_empty() {
            t.remove(k);
        } else {
            t.insert(k, value(v.trim()));
        }
    };
    set(t, "url", &edit.url);
    set(t, "org_unit", &edit.org_unit);
    let (keep, drop): (&[&str], &[&str]) = if edit.auth == "basic" {
        (
            &["username", "password_file", "password_env"],
            &["token_file", "token_env"],
        )
    } else {
        (
            &["token_file", "token_env"],
            &["username", "password_file", "password_env"],
        )
    };
    for k in drop {
        t.remove(k);
    }
    if edit.auth == "basic" {
        set(t, "username", &edit.username);
    }
    let secret_written = if edit.secret.trim().is_empty() {
        None
    } else {
        let name = if edit.auth == "basic" {
            "dhis2_password"
        } else {
            "dhis2_token"
        };
        let file = data_dir.join("secrets").join(name);
        write_secret(&file, edit.secret.trim())?;
        for k in keep
            .iter()
            .filter(|k| k.ends_with("_file") || k.ends_with("_env"))
        {
            t.remove(k);
        }
        let key = if edit.auth == "basic" {
            "password_file"
        } else {
            "token_file"
        };
        t.insert(key, value(file.display().to_string()));
        Some(file)
    };
    let _ = secret_written;
    commit(path, &doc)
}

/// A new `/metrics` bearer token from the System page: written to
/// `<data_dir>/secrets/metrics_token` (mode 0600); `[web] metrics_token_file` names the file.
pub fn save_metrics_token(
    path: &Path,
    data_dir: &Path,
    token: &str,
) -> Result<config::Config, EditError> {
    let mut doc = load_doc(path)?;
    let t = doc
        .get_mut("web")
        .and_then(Item::as_table_mut)
        .ok_or_else(|| EditError::Io("the config has no [web] table".into()))?;
    let file = data_dir.join("secrets").join("metrics_token");
    write_secret(&file, token.trim())?;
    t.remove("metrics_token_env");
    t.insert("metrics_token_file", value(file.display().to_string()));
    commit(path, &doc)
}

fn write_secret(file: &Path, secret: &str) -> Result<(), EditError> {
    let io = |e: std::io::Error| EditError::Io(format!("cannot write {}: {e}", file.display()));
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    super::write_atomic(file, format!("{secret}\n").as_bytes()).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// A backup: the config file and every file of the Temprs directory, as one JSON document.
/// Secrets live in their own files and are not part of it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Backup {
    pub pocketgate_backup: u32,
    pub config: String,
    pub temprs: BTreeMap<String, String>,
}

pub fn backup(config_path: &Path, temprs_dir: Option<&Path>) -> Result<Backup, EditError> {
    let config = std::fs::read_to_string(config_path)
        .map_err(|e| EditError::Io(format!("cannot read {}: {e}", config_path.display())))?;
    let mut temprs = BTreeMap::new();
    if let Some(dir) = temprs_dir
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file()
                && let (Some(name), Ok(text)) = (
                    p.file_name().and_then(|n| n.to_str()),
                    std::fs::read_to_string(&p),
                )
            {
                temprs.insert(name.to_owned(), text);
            }
        }
    }
    Ok(Backup {
        pocketgate_backup: 1,
        config,
        temprs,
    })
}

/// Restore a backup: the config must validate and the Temprs must load (checked in a scratch
/// directory first); only then are the files written.
pub fn restore(config_path: &Path, b: &Backup) -> Result<config::Config, EditError> {
    let config = config::parse(&b.config).map_err(|e| EditError::Invalid(e.0))?;
    let names_ok = b
        .temprs
        .keys()
        .all(|n| !n.is_empty() && !n.starts_with('.') && !n.contains('/') && !n.contains('\\'));
    if !names_ok {
        return Err(EditError::Io(
            "a Tempr file name in the backup is not a plain file name".into(),
        ));
    }
    if let Some(d) = &config.dhis2 {
        let scratch = tempdir_in(&config.gateway.data_dir)?;
        for (name, text) in &b.temprs {
            std::fs::write(scratch.join(name), text).map_err(|e| EditError::Io(e.to_string()))?;
        }
        let loaded = crate::tempr::TemprSet::load_dir(&scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        if let Err(errors) = loaded {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(EditError::Io(format!(
                "Temprs in the backup: {}",
                lines.join("; ")
            )));
        }
        std::fs::create_dir_all(&d.temprs_dir).map_err(|e| EditError::Io(e.to_string()))?;
        for (name, text) in &b.temprs {
            super::write_atomic(&d.temprs_dir.join(name), text.as_bytes())
                .map_err(|e| EditError::Io(e.to_string()))?;
        }
    }
    super::write_atomic(config_path, b.config.as_bytes())
        .map_err(|e| EditError::Io(format!("cannot write {}: {e}", config_path.display())))?;
    Ok(config)
}

fn tempdir_in(dir: &Path) -> Result<std::path::PathBuf, EditError> {
    let p = dir.join(format!(".restore-{}", &super::auth::random_token()[..12]));
    std::fs::create_dir_all(&p).map_err(|e| EditError::Io(e.to_string()))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# my gateway\n[gateway]\ndata_dir = \"/tmp/pg\" # where data lives\n\n\
        # the GeneXpert\n[[sources]]\nid = \"gx\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\nlisten = \"0.0.0.0:5100\"\n";

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn add_keeps_comments_and_invalid_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.toml");
        std::fs::write(&path, TEXT).unwrap();
        let c = save_source(
            &path,
            None,
            &form(&[
                ("id", "sysmex"),
                ("protocol", "astm"),
                ("transport", "serial"),
                ("port", "/dev/ttyUSB0"),
                ("baud", "9600"),
            ]),
        )
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# the GeneXpert") && text.contains("# where data lives"),
            "{text}"
        );
        assert!(text.contains("baud = 9600"), "{text}");
        let before = text;
        let err = save_source(
            &path,
            Some("gx"),
            &form(&[
                ("id", "gx"),
                ("protocol", "astm"),
                ("transport", "serial"),
                ("port", "/dev/ttyUSB0"),
                ("baud", "96000"),
            ]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sources[0].baud"), "{msg}");
        assert!(
            msg.contains("conflicts") || msg.contains("sources[1].port"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        set_enabled(&path, "gx", false).unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("enabled = false")
        );
    }
}
