//! Events: what happened to containers, images, networks and volumes, in the Docker Engine
//! API's shape (`GET /events`). Recorded in the database by whichever process acts (the CLI,
//! a daemon, a binding), so a daemon streams what embedded users did too. The last few
//! thousand are kept.

use rusqlite::params;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::state::State;

/// How many events are kept.
const KEEP: i64 = 5000;

#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, as `GET /events` streams it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// The older fields Docker still sends for containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Its place in the log, to follow from.
    #[serde(skip)]
    pub seq: i64,
}

/// Records an event; a failure to record never fails the operation itself.
pub(crate) fn record(st: &State, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
    let now = chrono::Utc::now();
    let nano = now.timestamp_nanos_opt().unwrap_or(0);
    let attrs: BTreeMap<&str, &str> = attributes.iter().copied().collect();
    let _ = st.db.write(|tx| {
            tx.execute(
                "INSERT INTO events (time_nano, kind, action, actor, attributes) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![nano, kind, action, id, serde_json::to_string(&attrs).unwrap_or_default()],
            )?;
            tx.execute(
                "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?1",
                params![KEEP],
            )?;
            Ok::<_, crate::Error>(())
        });
}

/// Events after `after` (a sequence number; 0 for all kept), at or after `since_nano`.
pub fn since(st: &State, after: i64, since_nano: i64) -> crate::Result<Vec<Event>> {
    let rows = st.db.read(|tx| {
        let mut stmt = tx.prepare(
            "SELECT seq, time_nano, kind, action, actor, attributes FROM events
                 WHERE seq > ?1 AND time_nano >= ?2 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map(params![after, since_nano], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok::<_, crate::Error>(rows)
    })?;
    Ok(rows
        .into_iter()
        .map(|(seq, nano, kind, action, id, attrs)| {
            let attributes: BTreeMap<String, String> =
                serde_json::from_str(&attrs).unwrap_or_default();
            let container = kind == "container";
            Event {
                status: container.then(|| action.clone()),
                id: container.then(|| id.clone()),
                from: container
                    .then(|| attributes.get("image").cloned())
                    .flatten(),
                kind,
                action,
                actor: Actor { id, attributes },
                scope: "local".into(),
                time: nano / 1_000_000_000,
                time_nano: nano,
                seq,
            }
        })
        .collect())
}

/// The newest event's sequence number (0 when there is none).
pub fn last(st: &State) -> crate::Result<i64> {
    st.db.read(|tx| {
        Ok::<_, crate::Error>(tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events",
            [],
            |r| r.get(0),
        )?)
    })
}
