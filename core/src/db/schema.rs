//! Schema migrations, keyed by `PRAGMA user_version`. A migration is never edited once
//! released; a change is a new entry at the end.

use rusqlite::TransactionBehavior;

use super::{Db, DbError};

const MIGRATIONS: &[&str] = &[
    // 1: images, layers, snapshots, leases.
    "CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
        parent TEXT REFERENCES snapshots(key),
        created TEXT NOT NULL,
        usage_size INTEGER,
        usage_inodes INTEGER
    );
    CREATE INDEX snapshots_parent ON snapshots(parent);
    CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,
        parent TEXT REFERENCES layers(chain_id),
        diff_id TEXT NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        manifest_digest TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        created TEXT,
        size INTEGER NOT NULL,
        added TEXT NOT NULL
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        blob_digest TEXT NOT NULL,
        chain_id TEXT NOT NULL REFERENCES layers(chain_id),
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE TABLE tags (
        name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id),
        tagged TEXT NOT NULL
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL REFERENCES images(id),
        snapshot_key TEXT,
        created TEXT NOT NULL,
        running INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE leases (
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        start_time INTEGER NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE lease_resources (
        lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('blob', 'layer', 'snapshot')),
        key TEXT NOT NULL,
        PRIMARY KEY (lease_id, kind, key)
    );",
    // 2: containers keep their whole configuration.
    "ALTER TABLE containers ADD COLUMN config TEXT NOT NULL DEFAULT '{}';",
    // 3: networks, and the addresses containers hold on them while they run.
    "CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        config TEXT NOT NULL
    );
    CREATE TABLE endpoints (
        network_id TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL,
        ip TEXT NOT NULL,
        config TEXT NOT NULL,
        PRIMARY KEY (network_id, container_id),
        UNIQUE (network_id, ip)
    );
    CREATE INDEX endpoints_container ON endpoints(container_id);",
    // 4: volumes.
    "CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL
    );",
    // 5: events.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time_nano INTEGER NOT NULL,
        kind TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        attributes TEXT NOT NULL
    );",
    // 6: what images were pulled by (`repository@digest` of a manifest or an index), and
    // which repositories of which registries a blob is known to be in (for cross-repository
    // mounts on push).
    "CREATE TABLE repo_digests (
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (name, digest)
    );
    CREATE INDEX repo_digests_image ON repo_digests(image_id);
    CREATE INDEX repo_digests_digest ON repo_digests(digest);
    CREATE TABLE blob_sources (
        digest TEXT NOT NULL,
        registry TEXT NOT NULL,
        repository TEXT NOT NULL,
        PRIMARY KEY (digest, registry, repository)
    );",
    // 7: builds. An image a build step committed names the image it was made from (Docker's
    // `Parent`), and the build cache maps a step (its parent, instruction and inputs) to the
    // image it made.
    "ALTER TABLE images ADD COLUMN parent TEXT;
    CREATE INDEX images_parent ON images(parent);
    CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX build_cache_image ON build_cache(image_id);",
    // 8: IPv6 addresses on IPv6 networks, as unique per network as the IPv4 ones (rows
    // without one are NULL, which a unique index lets repeat).
    "ALTER TABLE endpoints ADD COLUMN ip6 TEXT;
    CREATE UNIQUE INDEX endpoints_ip6 ON endpoints(network_id, ip6);",
];

pub(super) fn migrate(db: &Db) -> Result<(), DbError> {
    let mut conn = db.lock();
    let known = MIGRATIONS.len() as i64;
    // The common case, an up-to-date schema, needs no write lock.
    if conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? == known {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > known {
        return Err(DbError::TooNew {
            path: db.path.clone(),
            found: version,
            known,
        });
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql)?;
    }
    if version < known {
        tx.pragma_update(None, "user_version", known)?;
    }
    tx.commit()?;
    Ok(())
}
