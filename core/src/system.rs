//! Engine-wide views and clean-up: `system df` and `system prune`.

use serde::Serialize;

use crate::engine::Engine;
use crate::snapshot::Snapshotter;

/// `GET /system/df`, in the Docker Engine API's shape (the parts ketch has).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsage {
    pub layers_size: i64,
    pub images: Vec<ImageUsage>,
    pub containers: Vec<ContainerUsage>,
    pub volumes: Vec<VolumeUsage>,
    /// BuildKit's cache records: none here (the classic builder's cache is images).
    #[serde(default)]
    pub build_cache: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageUsage {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub created: i64,
    pub size: i64,
    /// Containers (running or not) made from it.
    pub containers: i64,
    /// The size of its layers that other images have too.
    #[serde(default = "unknown")]
    pub shared_size: i64,
    #[serde(default)]
    pub repo_digests: Vec<String>,
    #[serde(default)]
    pub parent_id: String,
}

fn unknown() -> i64 {
    -1
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerUsage {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    pub command: String,
    /// Unix seconds.
    pub created: i64,
    pub state: String,
    pub status: String,
    /// Its writable layer.
    pub size_rw: i64,
    /// Its mounts, as `ps` shows them (the CLI counts the volumes).
    #[serde(default)]
    pub mounts: Vec<serde_json::Value>,
}

/// A volume and what it uses: the API's `Volume` with its `UsageData`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(from = "VolumeWire", into = "VolumeWire")]
pub struct VolumeUsage {
    pub name: String,
    pub mountpoint: String,
    pub size: i64,
    /// Containers that name it.
    pub ref_count: i64,
}

#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeWire {
    name: String,
    #[serde(default)]
    driver: String,
    mountpoint: String,
    #[serde(default)]
    scope: String,
    usage_data: UsageData,
}

#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UsageData {
    size: i64,
    ref_count: i64,
}

impl From<VolumeWire> for VolumeUsage {
    fn from(w: VolumeWire) -> Self {
        VolumeUsage {
            name: w.name,
            mountpoint: w.mountpoint,
            size: w.usage_data.size,
            ref_count: w.usage_data.ref_count,
        }
    }
}

impl From<VolumeUsage> for VolumeWire {
    fn from(v: VolumeUsage) -> Self {
        VolumeWire {
            name: v.name,
            driver: "local".into(),
            mountpoint: v.mountpoint,
            scope: "local".into(),
            usage_data: UsageData {
                size: v.size,
                ref_count: v.ref_count,
            },
        }
    }
}

/// What `system prune` removed.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReport {
    pub containers_deleted: Vec<String>,
    pub networks_deleted: Vec<String>,
    pub volumes_deleted: Vec<String>,
    pub images_deleted: Vec<crate::model::ImageDeleteResponseItem>,
    pub space_reclaimed: i64,
}

impl Engine {
    pub fn system_df(&self) -> crate::Result<DiskUsage> {
        let containers = self.containers().list(true)?;
        let mut out = DiskUsage::default();
        // Each image's layers that another image has too: its shared size, as Docker
        // counts it (what removing the image alone would not free).
        let shared: std::collections::HashMap<String, i64> = self.state().db.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT il.image_id, COALESCE(SUM(l.size), 0) FROM image_layers il \
                 JOIN layers l ON l.chain_id = il.chain_id \
                 WHERE EXISTS (SELECT 1 FROM image_layers o \
                               WHERE o.chain_id = il.chain_id AND o.image_id != il.image_id) \
                 GROUP BY il.image_id",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok::<_, crate::Error>(rows)
        })?;
        for i in self.images().list(&crate::image::ListOptions {
            all: true,
            ..Default::default()
        })? {
            let used = containers
                .iter()
                .filter(|c| c.record.image_id == i.id)
                .count() as i64;
            out.layers_size += i.size;
            out.images.push(ImageUsage {
                id: i.id.clone(),
                repo_tags: i.repo_tags.clone(),
                created: i.created,
                size: i.size,
                containers: used,
                shared_size: shared.get(&i.id).copied().unwrap_or(0),
                repo_digests: i.repo_digests.clone(),
                parent_id: String::new(),
            });
        }
        for c in &containers {
            let key = format!("container-{}", c.record.id);
            let size_rw = self
                .state()
                .snapshots
                .usage(&key)
                .map(|u| u.size as i64)
                .unwrap_or(0);
            out.containers.push(ContainerUsage {
                id: c.record.id.clone(),
                names: vec![format!("/{}", c.record.name)],
                image: c.record.config.image.clone(),
                command: std::iter::once(c.record.path.clone())
                    .chain(c.record.args.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(" "),
                created: chrono::DateTime::parse_from_rfc3339(&c.record.created)
                    .map(|t| t.timestamp())
                    .unwrap_or(0),
                state: c.status.as_str().to_string(),
                status: c.status_text(),
                size_rw,
                mounts: c
                    .record
                    .config
                    .mounts
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "Type": m.kind, "Name": if m.kind == "volume" { m.source.as_str() } else { "" },
                            "Source": m.source, "Destination": m.target, "RW": !m.readonly,
                            "Driver": if m.kind == "volume" { "local" } else { "" },
                        })
                    })
                    .collect(),
            });
        }
        for v in self.volumes().list()? {
            let size = crate::fsutil::disk_usage(std::path::Path::new(&v.mountpoint))
                .map(|u| u.size)
                .unwrap_or(0);
            let refs = containers
                .iter()
                .filter(|c| {
                    c.record
                        .config
                        .mounts
                        .iter()
                        .any(|m| m.kind == "volume" && m.source == v.name)
                })
                .count() as i64;
            out.volumes.push(VolumeUsage {
                name: v.name,
                mountpoint: v.mountpoint,
                size: size as i64,
                ref_count: refs,
            });
        }
        Ok(out)
    }

    /// `system prune`: stopped containers, then networks no container runs on (and the
    /// bridges of removed roots), then
    /// dangling images (`all`: every image no container uses), then (`volumes`) unused
    /// anonymous volumes. Whatever a remaining container uses stays.
    pub fn system_prune(&self, all: bool, volumes: bool) -> crate::Result<PruneReport> {
        let mut report = PruneReport::default();
        let before: i64 = self.system_df()?.containers.iter().map(|c| c.size_rw).sum();
        report.containers_deleted = self.containers().prune()?;
        let after: i64 = self.system_df()?.containers.iter().map(|c| c.size_rw).sum();
        report.space_reclaimed += (before - after).max(0);
        report.networks_deleted = self.network_prune()?;
        let images = self.images().prune(all)?;
        report.space_reclaimed += images.space_reclaimed;
        report.images_deleted = images.images_deleted;
        if volumes {
            let (names, space) = self.volume_prune(false)?;
            report.volumes_deleted = names;
            report.space_reclaimed += space as i64;
        }
        Ok(report)
    }
}
