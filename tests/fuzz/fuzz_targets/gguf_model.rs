//! A GGUF model file: the header pass, candle's reader, the config, the weights, the tokenizer
//! and chat template it carries, and one scored token.
#![no_main]
use ethos_model::chat::Message;
use ethos_model::scoring::{score, ScoreOptions, ScoreRequest};
use ethos_model::{load, LoadOptions, ModelSpec};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    ethos_model::chat::set_template_budget(32 << 20, std::time::Duration::from_millis(300));
    let path = ethos_fuzz::scratch("model.gguf", data);
    let opts = LoadOptions {
        max_context: Some(64),
        ..Default::default()
    };
    let Ok(model) = load(&ModelSpec::Gguf(path), &opts) else {
        return;
    };
    if let Ok(tok) = model.tokenizer() {
        if let Ok(ids) = tok.encode_prompt("Hello, 世界! 123") {
            let _ = tok.decode(&ids);
        }
    }
    if let Some(t) = &model.chat_template {
        let _ = t.render(&[Message::new("user", "hi")], true);
    }
    let vocab = model.config().vocab_size as u32;
    if vocab >= 2 {
        let req = ScoreRequest {
            context: vec![0],
            continuations: vec![vec![1]],
        };
        let _ = score(&model.decoder, &[req], &ScoreOptions::default(), None);
    }
});
