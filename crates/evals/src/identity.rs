//! What a run was run on: the model's identity for the run record.

use crate::error::{Error, Result};
use ethos_model::Model;
use std::path::PathBuf;

/// The model's identity for the run record: the SHA-256 of its file, or of a folder's
/// config and weight files.
pub fn model_identity(model: &Model) -> Result<serde_json::Value> {
    use sha2::{Digest, Sha256};
    let source = std::path::Path::new(&model.info.source);
    let mut files = Vec::new();
    if source.is_file() {
        files.push(source.to_path_buf());
    } else if source.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(source)
            .map_err(|e| Error::io(source, "cannot list", e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n == "config.json" || n.ends_with(".safetensors")
            })
            .collect();
        entries.sort();
        files = entries;
    }
    let mut h = Sha256::new();
    for f in &files {
        let mut file = std::fs::File::open(f).map_err(|e| Error::io(f, "cannot read", e))?;
        std::io::copy(&mut file, &mut h).map_err(|e| Error::io(f, "cannot read", e))?;
    }
    let mut identity = serde_json::json!({
        "source": model.info.source,
        "format": model.info.format,
        "weights": model.info.weights,
        "dtype": format!("{:?}", model.info.dtype).to_lowercase(),
        "sha256": crate::data::hex(&h.finalize()),
    });
    if !model.info.adapters.is_empty() {
        identity["adapters"] = adapters_identity(&model.info.adapters)?;
    }
    Ok(identity)
}

/// Each LoRA adapter with its scale, whether merged, and the SHA-256 of its file (or of a
/// PEFT folder's config and weights).
fn adapters_identity(adapters: &[ethos_model::lora::AdapterInfo]) -> Result<serde_json::Value> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    for a in adapters {
        let path = std::path::Path::new(&a.path);
        let files = if path.is_dir() {
            vec![
                path.join("adapter_config.json"),
                path.join("adapter_model.safetensors"),
            ]
        } else {
            vec![path.to_path_buf()]
        };
        let mut h = Sha256::new();
        for f in &files {
            let mut file = std::fs::File::open(f).map_err(|e| Error::io(f, "cannot read", e))?;
            std::io::copy(&mut file, &mut h).map_err(|e| Error::io(f, "cannot read", e))?;
        }
        out.push(serde_json::json!({
            "path": a.path,
            "format": a.format,
            "scale": a.scale,
            "merged": a.merged,
            "rank": a.rank,
            "sha256": crate::data::hex(&h.finalize()),
        }));
    }
    Ok(serde_json::Value::Array(out))
}
