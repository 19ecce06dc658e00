//! The create bodies of the API: containers' (in `runtime::body`, where the engine's
//! options are, since `inspect` shows them in the same shape), networks' and volumes'.

use serde_json::Value;

pub use crate::runtime::body::{
    CONFIG_FIELDS, ENDPOINT_FIELDS, Field, HOST_CONFIG_FIELDS, create_body, create_options,
    refusal, resources_json,
};
use crate::runtime::body::{string_map, text};

/// `POST /networks/create`'s body as the engine's options.
pub fn network_options(b: &Value) -> Result<crate::network::NetworkCreate, String> {
    let name = b["Name"].as_str().unwrap_or_default();
    if name.is_empty() {
        return Err("a network needs a Name".into());
    }
    let ipam = &b["IPAM"]["Config"][0];
    Ok(crate::network::NetworkCreate {
        name: name.to_string(),
        driver: text(&b["Driver"]),
        subnet: text(&ipam["Subnet"]),
        gateway: text(&ipam["Gateway"]),
        ip_range: text(&ipam["IPRange"]),
        internal: b["Internal"].as_bool().unwrap_or(false),
        labels: string_map(&b["Labels"]).into_iter().collect(),
    })
}

/// `POST /volumes/create`'s body as the engine's options.
pub fn volume_options(b: &Value) -> crate::volume::VolumeCreate {
    crate::volume::VolumeCreate {
        name: b["Name"].as_str().unwrap_or_default().to_string(),
        driver: text(&b["Driver"]),
        options: string_map(&b["DriverOpts"]),
        labels: string_map(&b["Labels"]),
    }
}
