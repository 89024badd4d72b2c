//! What the fuzz targets share: a scratch folder per process for inputs that ethos reads from
//! files, and the splitting of one input into several files or fields.

use std::path::PathBuf;

/// The allocator the `ethos` binary runs under, so that budgets (chat templates) hold.
pub use ethos_model::budget::BudgetAllocator;

/// This process's scratch folder (in memory where /dev/shm exists).
pub fn scratch_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("ethos-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
    .clone()
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, bytes).expect("scratch file");
    path
}

/// The parts of `data` between separator lines `--8<--`, at most `n` (the last takes the rest).
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    const SEP: &[u8] = b"\n--8<--\n";
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// The tiny fixture's tokenizer (`tests/fixtures/tiny/llama_classifier`), read once per
/// process: the targets that tokenize what they parse use a real tokenizer.
pub fn fixture_tokenizer() -> &'static ethos_model::tokenizer::Tokenizer {
    const TOKENIZER: &[u8] = include_bytes!("../../fixtures/tiny/llama_classifier/tokenizer.json");
    static TOK: std::sync::OnceLock<ethos_model::tokenizer::Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(|| {
        ethos_model::tokenizer::Tokenizer::from_file(&scratch("fixed-tokenizer.json", TOKENIZER))
            .expect("the fixture tokenizer")
    })
}
