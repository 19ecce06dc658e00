//! Docker's JSON progress messages (`jsonmessage.JSONMessage`): what `POST /images/create`,
//! `POST /images/{name}/push` and `POST /build` stream, one object a line, and what every
//! front door renders as `docker pull` draws it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The HTTP status the failure would have had as an answer of its own, so that a
    /// client can tell its kind (as Docker's `JSONError.Code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: String,
}

/// One progress message. `id` names what it is about (a layer's short digest, or a tag for
/// the opening line); a message with an `id` replaces that id's earlier line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(
        rename = "progressDetail",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub progress_detail: Option<ProgressDetail>,
    /// The bar as text (`[=====>      ]  1.2MB/3.4MB`), for clients that print it as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(
        rename = "errorDetail",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_detail: Option<ErrorDetail>,
    /// Output text, as it comes (a build's steps and what they print).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Out-of-band results (a push's `{"Tag","Digest","Size"}`, a build's image ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

impl ProgressMessage {
    /// Text for the output stream (`Step 1/4 : FROM busybox\n`).
    pub fn stream(text: impl Into<String>) -> ProgressMessage {
        ProgressMessage {
            stream: Some(text.into()),
            ..ProgressMessage::default()
        }
    }

    /// A line of its own (`Digest: sha256:...`).
    pub fn status(status: impl Into<String>) -> ProgressMessage {
        ProgressMessage {
            status: status.into(),
            ..ProgressMessage::default()
        }
    }

    /// A line about `id` (`Pull complete` for a layer).
    pub fn about(id: impl Into<String>, status: impl Into<String>) -> ProgressMessage {
        ProgressMessage {
            id: Some(id.into()),
            status: status.into(),
            ..ProgressMessage::default()
        }
    }

    /// A transfer's progress: `current` of `total` bytes, with the bar.
    pub fn bytes(
        id: impl Into<String>,
        status: impl Into<String>,
        current: u64,
        total: u64,
    ) -> ProgressMessage {
        ProgressMessage {
            id: Some(id.into()),
            status: status.into(),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            progress: Some(bar(current, total)),
            ..ProgressMessage::default()
        }
    }

    /// The stream's error line, with the status its failure stands for.
    pub fn failure(message: impl Into<String>, code: Option<u16>) -> ProgressMessage {
        let message = message.into();
        ProgressMessage {
            error: Some(message.clone()),
            error_detail: Some(ErrorDetail { code, message }),
            ..ProgressMessage::default()
        }
    }
}

/// Bytes as Docker's progress bars print them (`1.23MB`: decimal units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[i]
    }
}

/// `[=====>        ]  1.2MB/3.4MB`, 50 columns of bar as Docker draws it.
pub fn bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    if total == 0 {
        return human_bytes(current);
    }
    let filled = (current.min(total) * WIDTH / total) as usize;
    let mut b = String::with_capacity(WIDTH as usize + 2);
    b.push('[');
    for i in 0..WIDTH as usize {
        b.push(if i < filled {
            '='
        } else if i == filled {
            '>'
        } else {
            ' '
        });
    }
    b.push(']');
    format!("{b}  {}/{}", human_bytes(current), human_bytes(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_dockers() {
        let m = ProgressMessage::bytes("a1b2c3d4e5f6", "Downloading", 1500, 3000);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["id"], "a1b2c3d4e5f6");
        assert_eq!(v["progressDetail"]["current"], 1500);
        assert_eq!(v["progressDetail"]["total"], 3000);
        assert!(v["progress"].as_str().unwrap().ends_with("1.5kB/3kB"));
        let e = serde_json::to_value(ProgressMessage::failure("boom", None)).unwrap();
        assert_eq!(
            e,
            serde_json::json!({"error":"boom","errorDetail":{"message":"boom"}})
        );
        let e = serde_json::to_value(ProgressMessage::failure("gone", Some(404))).unwrap();
        assert_eq!(e["errorDetail"]["code"], 404);
        let back: ProgressMessage =
            serde_json::from_str(r#"{"status":"Pulling fs layer","progressDetail":{},"id":"x"}"#)
                .unwrap();
        assert_eq!(back.status, "Pulling fs layer");
    }

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_bytes(999), "999B");
        assert_eq!(human_bytes(1000), "1kB");
        assert_eq!(human_bytes(2_345_678), "2.346MB");
        assert_eq!(bar(0, 0), "0B");
        assert!(bar(10, 10).starts_with("[=================================================="));
    }
}
