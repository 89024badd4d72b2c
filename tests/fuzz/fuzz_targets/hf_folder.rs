//! An HF model folder: config.json, tokenizer.json, model.safetensors, tokenizer_config.json
//! and, when there is a fifth part, model.safetensors.index.json (the input's parts, split at
//! `--8<--` lines), loaded as `--model FOLDER` loads them, then one scored token.
#![no_main]
use ethos_model::scoring::{score, ScoreOptions, ScoreRequest};
use ethos_model::{load, LoadOptions, ModelSpec};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    ethos_model::chat::set_template_budget(32 << 20, std::time::Duration::from_millis(300));
    let parts = ethos_fuzz::parts(data, 5);
    let dir = ethos_fuzz::scratch_dir().join("folder");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let names = [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "tokenizer_config.json",
        "model.safetensors.index.json",
    ];
    for (name, bytes) in names.iter().zip(&parts) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let opts = LoadOptions {
        max_context: Some(64),
        ..Default::default()
    };
    let Ok(model) = load(&ModelSpec::Folder(dir), &opts) else {
        return;
    };
    if let Ok(tok) = model.tokenizer() {
        let _ = tok.encode_prompt("Hello, 世界!");
    }
    if model.config().vocab_size >= 2 {
        let req = ScoreRequest {
            context: vec![0],
            continuations: vec![vec![1]],
        };
        let _ = score(&model.decoder, &[req], &ScoreOptions::default(), None);
    }
});
