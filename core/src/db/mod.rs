//! Metadata in SQLite: images, tags, layers, snapshots, leases.
//!
//! The database runs in WAL mode so several processes (CLI invocations, a daemon, a Python
//! script) can share one state root: readers never block, writers queue on SQLite's lock with a
//! generous busy timeout. Every state change is one [`Db::write`] transaction, begun
//! `IMMEDIATE` so a writer takes the lock before it reads what it is about to change.

mod schema;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::ErrorKind;

pub use rusqlite::{OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this ketch knows ({known}); upgrade ketch"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database: {source}")]
    Sqlite {
        #[from]
        source: rusqlite::Error,
    },
}

crate::error::from_module_error!(DbError);

impl From<rusqlite::Error> for crate::Error {
    fn from(e: rusqlite::Error) -> crate::Error {
        DbError::from(e).into()
    }
}

impl DbError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DbError::TooNew { .. } => ErrorKind::FailedPrecondition,
            DbError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
            } if e.code == rusqlite::ErrorCode::DatabaseBusy
                || e.code == rusqlite::ErrorCode::DatabaseLocked =>
            {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        }
    }
}

/// A connection to the state root's database, shared by the threads of one process.
pub struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Db {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(open_err)?;
        // Every CLI invocation opens and closes the database: a checkpoint on each close
        // would cost two fsyncs and a new WAL file per command. SQLite still checkpoints
        // as the WAL grows, and the WAL is kept short (below): the first connection of each
        // process rebuilds the WAL index by reading and checksumming every frame, which at
        // the default 1000 pages (4 MiB) cost each command about a millisecond.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(open_err)?;
        // Switching a new database to WAL takes an exclusive lock without consulting the
        // busy handler, so processes opening a fresh root together may see SQLITE_BUSY
        // here: wait and retry, within the same bound as the busy timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA wal_autocheckpoint = 128;
                 PRAGMA journal_size_limit = 1048576;",
            ) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(open_err(e)),
            }
        }
        let db = Db {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        };
        schema::migrate(&db)?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves at worst an open transaction, which rusqlite
        // rolls back on drop; the connection itself stays usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a read transaction: it sees one consistent snapshot of the database.
    pub fn read<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(DbError::from)?;
        let out = f(&tx)?;
        tx.finish().map_err(DbError::from)?;
        Ok(out)
    }

    /// Runs `f` in a write transaction and commits it if `f` succeeds; rolls back otherwise.
    /// Holding the write lock also orders file-system changes made inside `f` against every
    /// other process's transactions, which the garbage collector relies on.
    pub fn write<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(DbError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(DbError::from)?;
        Ok(out)
    }
}

/// The current time as stored in the database (RFC 3339, UTC, nanoseconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
