//! Hub repo ids: with HF_HUB_OFFLINE=1 ethos loads from the hub cache under HF_HOME, and says
//! clearly when a repo is not cached.

use std::path::Path;
use std::process::Command;

fn ethos(hf_home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(args)
        .env("HF_HOME", hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

#[test]
fn offline_and_not_cached_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = ethos(home.path(), &["info", "--model", "someone/not-cached"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("HF_HUB_OFFLINE")
            && err.contains("someone/not-cached")
            && err.lines().count() == 1,
        "{err}"
    );
}

/// A repo laid out in the cache as the hub client stores it (refs/main -> snapshots/<rev>/).
#[test]
fn offline_loads_a_cached_repo_from_hf_home() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--someone--tiny-llama");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/llama");
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(tiny.join(f), snap.join(f)).unwrap();
    }
    let out = ethos(
        home.path(),
        &["info", "--json", "--model", "someone/tiny-llama"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["layers"], 2);
    assert!(v["source"].as_str().unwrap().contains(rev));
}
