//! The secret key that signs tokens and cookies.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use rand::rngs::OsRng;
use rand::RngCore;

use crate::foundation::config::{DatabaseUrl, Settings};

/// Fills in `settings.secret_key` when it was not configured. On the embedded default (SQLite)
/// a key is generated once and kept in a file beside the database, with a warning; on PostgreSQL,
/// where several processes must share one key, a missing key is an error.
pub fn ensure_secret_key(settings: &mut Settings) -> anyhow::Result<()> {
    if settings.secret_key.is_some() {
        return Ok(());
    }
    let DatabaseUrl::Sqlite(db_path) = &settings.database_url else {
        anyhow::bail!(
            "IRIA_SECRET_KEY must be set when the database is PostgreSQL: every process must \
             share one key (at least 32 bytes; e.g. the output of `openssl rand -hex 32`)"
        );
    };
    let path = key_path(db_path);
    let key = match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => text.trim().to_string(),
        Ok(_) => anyhow::bail!("{} holds a key shorter than 32 bytes", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            OsRng.fill_bytes(&mut bytes);
            let key = hex::encode(bytes);
            write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
            tracing::warn!(
                file = %path.display(),
                "IRIA_SECRET_KEY is not set: generated one and stored it beside the database; \
                 set IRIA_SECRET_KEY in production"
            );
            key
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    settings.secret_key = Some(key.into_bytes());
    Ok(())
}

/// `iria-news.db` → `iria-news.db.secret`.
fn key_path(db_path: &std::path::Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".secret");
    PathBuf::from(name)
}

fn write_private(path: &std::path::Path, key: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(key.as_bytes())?;
    file.write_all(b"\n")
}
