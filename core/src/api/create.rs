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
    // What is not done here is refused by name, never dropped.
    let on = |k: &str| b[k].as_bool().unwrap_or(false);
    if b["EnableIPv4"].as_bool() == Some(false) {
        return Err("EnableIPv4 false is not supported: networks here always have IPv4".into());
    }
    for (k, why) in [
        ("Ingress", "the ingress network needs swarm mode"),
        (
            "ConfigOnly",
            "configuration-only networks are not supported",
        ),
    ] {
        if on(k) {
            return Err(format!("{k} is not supported: {why}"));
        }
    }
    if !text(&b["ConfigFrom"]["Network"])
        .unwrap_or_default()
        .is_empty()
    {
        return Err("ConfigFrom is not supported: configuration-only networks are not".into());
    }
    // An overlay network is the cluster's (Docker's `global`, or `swarm` in swarm mode);
    // any other is this host's.
    let overlay = text(&b["Driver"]).as_deref() == Some("overlay");
    if let Some(scope) = text(&b["Scope"])
        .filter(|s| s != if overlay { "global" } else { "local" } && !(overlay && s == "swarm"))
    {
        return Err(format!(
            "Scope {scope:?} is not supported: an overlay network's is global, another's local"
        ));
    }
    if let Some(d) = text(&b["IPAM"]["Driver"]).filter(|d| d != "default") {
        return Err(format!(
            "IPAM driver {d:?} is not supported: only \"default\""
        ));
    }
    if !string_map(&b["IPAM"]["Options"]).is_empty() {
        return Err("IPAM options are not supported".into());
    }
    // One pool of each family at most: an IPv4 one, an IPv6 one (by its subnet; a pool
    // that names none is IPv4's, whose subnet is picked).
    let pools = b["IPAM"]["Config"].as_array().cloned().unwrap_or_default();
    let (v6, v4): (Vec<&Value>, Vec<&Value>) = pools
        .iter()
        .partition(|p| text(&p["Subnet"]).is_some_and(|s| s.contains(':')));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(
            "one IPAM pool per address family: a network here has one IPv4 and one IPv6 subnet at most"
                .into(),
        );
    }
    let none = Value::Null;
    let ipam = v4.first().copied().unwrap_or(&none);
    let ipam6 = v6.first().copied().unwrap_or(&none);
    let mut aux_addresses = string_map(&ipam["AuxiliaryAddresses"]);
    for (k, v) in string_map(&ipam6["AuxiliaryAddresses"]) {
        if aux_addresses.insert(k.clone(), v).is_some() {
            return Err(format!(
                "auxiliary address {k} is named in both pools: give each address its own name"
            ));
        }
    }
    Ok(crate::network::NetworkCreate {
        name: name.to_string(),
        driver: text(&b["Driver"]),
        subnet: text(&ipam["Subnet"]),
        gateway: text(&ipam["Gateway"]),
        ip_range: text(&ipam["IPRange"]),
        internal: b["Internal"].as_bool().unwrap_or(false),
        labels: string_map(&b["Labels"]).into_iter().collect(),
        aux_addresses,
        // Kept and shown, as Docker does for a local network (Compose asks for it); it
        // means something to swarm services only.
        attachable: on("Attachable"),
        ipv6: on("EnableIPv6"),
        subnet6: text(&ipam6["Subnet"]),
        gateway6: text(&ipam6["Gateway"]),
        ip_range6: text(&ipam6["IPRange"]),
        options: string_map(&b["Options"]),
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
