//! The database: one connection type over SQLite (the embedded default) and PostgreSQL, a pool,
//! and the migrations of each backend embedded in the binary.

pub mod schema;

use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::foundation::config::DatabaseUrl;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A connection to either backend. Queries written against it run on both; the few that need a
/// backend's own SQL match on the variant.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// A pool of [`DbConnection`]s.
pub type Pool = r2d2::Pool<Manager>;
/// A connection taken from the [`Pool`].
pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// Opens connections for the pool, choosing the backend from the URL (never by trial, since
/// SQLite accepts any string as a path) and setting SQLite up for several writers.
#[derive(Clone, Debug)]
pub struct Manager {
    url: DatabaseUrl,
}

impl Manager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }

    /// Opens one connection outside any pool.
    pub fn open(&self) -> ConnectionResult<DbConnection> {
        match &self.url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url).map(DbConnection::Pg),
            DatabaseUrl::Sqlite(path) => {
                private_file(path)?;
                let path = path.to_string_lossy();
                let mut conn = SqliteConnection::establish(&path)?;
                // WAL lets readers go on while one writes; the busy timeout makes a second writer
                // (another process, or the delivery worker) wait instead of failing.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// Makes the SQLite file readable by its owner only (0600) before SQLite opens it: it holds
/// every reader's address and consent record. SQLite gives its `-wal` and `-shm` files the
/// database file's mode, so they follow. An existing file open to others is narrowed.
fn private_file(path: &std::path::Path) -> ConnectionResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let fail =
            |e: std::io::Error| ConnectionError::BadConnection(format!("{}: {e}", path.display()));
        if path.as_os_str() == ":memory:" || path.to_string_lossy().starts_with("file:") {
            return Ok(());
        }
        match std::fs::metadata(path) {
            Ok(_) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut name = path.as_os_str().to_owned();
                    name.push(suffix);
                    let file = std::path::Path::new(&name);
                    if let Ok(meta) = std::fs::metadata(file) {
                        if meta.permissions().mode() & 0o077 != 0 {
                            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                                .map_err(fail)?;
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(path)
                    .map_err(fail)?;
            }
            Err(e) => return Err(fail(e)),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<DbConnection, ConnectionError> {
        self.open()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1")
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    /// A connection whose server went away (or that was left inside a failed transaction) is
    /// marked broken by diesel after its first failing query; the pool then drops it instead of
    /// handing it out again, so the app recovers on its own once the database is back.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        match conn {
            DbConnection::Pg(c) => c.is_broken(),
            DbConnection::Sqlite(c) => c.is_broken(),
        }
    }
}

/// Builds the pool without connecting yet: a database that is down at start is reported by the
/// first use, not by a panic here.
pub fn pool(url: &DatabaseUrl, size: u32) -> Pool {
    let size = match url {
        // SQLite has one writer at a time; more connections only queue on its lock.
        DatabaseUrl::Sqlite(_) => size.min(4),
        DatabaseUrl::Postgres(_) => size,
    };
    r2d2::Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(3))
        // No round trip at checkout: a dead connection fails its first query, is marked broken
        // (see `has_broken`) and replaced. Checking every checkout would cost a round trip per
        // request.
        .test_on_check_out(false)
        .build_unchecked(Manager::new(url.clone()))
}

/// Applies the pending migrations of the connection's backend. On PostgreSQL an advisory lock
/// makes several processes starting at once apply them once.
pub fn migrate(conn: &mut DbConnection) -> anyhow::Result<usize> {
    let applied = match conn {
        DbConnection::Pg(pg) => {
            pg.batch_execute("SELECT pg_advisory_lock(7254150001)")
                .context("taking the migration lock")?;
            let result = pg.run_pending_migrations(PG_MIGRATIONS).map(|v| v.len());
            let unlock = pg.batch_execute("SELECT pg_advisory_unlock(7254150001)");
            let applied = result.map_err(|e| anyhow::anyhow!("applying migrations: {e}"))?;
            unlock.context("releasing the migration lock")?;
            applied
        }
        DbConnection::Sqlite(lite) => lite
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| anyhow::anyhow!("applying migrations: {e}"))?,
    };
    Ok(applied)
}

/// True when every embedded migration has been applied (for readiness).
pub fn migrations_current(conn: &mut DbConnection) -> bool {
    match conn {
        DbConnection::Pg(pg) => pg
            .has_pending_migration(PG_MIGRATIONS)
            .map(|p| !p)
            .unwrap_or(false),
        DbConnection::Sqlite(lite) => lite
            .has_pending_migration(SQLITE_MIGRATIONS)
            .map(|p| !p)
            .unwrap_or(false),
    }
}

/// Runs `f` in a transaction that holds the write lock from its start. On SQLite a plain `BEGIN`
/// takes the lock only at the first write, and two such transactions can then fail each other
/// with SQLITE_BUSY; `BEGIN IMMEDIATE` queues them instead. PostgreSQL needs nothing special.
/// Called inside another transaction, it makes a savepoint on either backend.
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    // Inside another transaction (which holds the lock already): a savepoint.
    let nested = match conn {
        DbConnection::Sqlite(lite) => AnsiTransactionManager::transaction_manager_status_mut(lite)
            .transaction_depth()
            .ok()
            .flatten()
            .is_some(),
        DbConnection::Pg(_) => false,
    };
    match conn {
        DbConnection::Pg(_) => conn.transaction(f),
        DbConnection::Sqlite(_) if nested => conn.transaction(f),
        DbConnection::Sqlite(lite) => {
            AnsiTransactionManager::begin_transaction_sql(lite, "BEGIN IMMEDIATE")?;
            let result = f(conn);
            let DbConnection::Sqlite(lite) = conn else {
                unreachable!("the variant cannot change inside the transaction")
            };
            match result {
                Ok(value) => {
                    AnsiTransactionManager::commit_transaction(lite)?;
                    Ok(value)
                }
                Err(e) => {
                    AnsiTransactionManager::rollback_transaction(lite)?;
                    Err(e)
                }
            }
        }
    }
}

/// The current time as stored in every timestamp column: UTC, to the microsecond.
pub fn now() -> NaiveDateTime {
    let now = chrono::Utc::now().naive_utc();
    // Both backends keep microseconds; truncating here makes a value read back equal the one
    // written.
    now.with_nanosecond_truncated()
}

trait TruncateNanos {
    fn with_nanosecond_truncated(self) -> Self;
}

impl TruncateNanos for NaiveDateTime {
    fn with_nanosecond_truncated(self) -> Self {
        use chrono::Timelike;
        let micros = self.nanosecond() / 1000 * 1000;
        self.with_nanosecond(micros).unwrap_or(self)
    }
}

/// A database failure as the rest of the program needs to tell it apart: the database cannot be
/// reached (a 503, and try again later) or a query failed (a bug or a constraint).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// Work done around a query that failed (e.g. writing a file of its rows).
    #[error("{0}")]
    Other(String),
}

impl From<r2d2::Error> for DbError {
    fn from(e: r2d2::Error) -> Self {
        DbError::Unavailable(e.to_string())
    }
}

impl DbError {
    /// True when the failure is the database being away rather than the query being wrong.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Unavailable(_) => true,
            DbError::Query(diesel::result::Error::DatabaseError(kind, info)) => {
                matches!(kind, diesel::result::DatabaseErrorKind::ClosedConnection)
                    || info.message().contains("terminating connection")
                    || info.message().contains("server closed the connection")
                    || info.message().contains("database is locked")
            }
            DbError::Query(diesel::result::Error::BrokenTransactionManager) => true,
            _ => false,
        }
    }
}

/// Takes a connection from the pool and runs blocking database work on the blocking thread pool,
/// so that no async task waits on the database.
pub async fn run<T, F>(pool: &Pool, f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await
    .map_err(|e| DbError::Unavailable(format!("database task failed: {e}")))?
}
