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
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeUsage {
    pub name: String,
    pub mountpoint: String,
    pub size: i64,
    /// Containers that name it.
    pub ref_count: i64,
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
