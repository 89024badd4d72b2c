//! JSONL score requests as `ethos score` reads them: bounded lines, the request's checks, and
//! tokenizing its context and continuations with a real tokenizer.
#![no_main]
use ethos_model::tokenizer::Tokenizer;
use ethos_steer::requests::{bounded_lines, ScoreLine};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

const TOKENIZER: &[u8] = include_bytes!("../../fixtures/tiny/llama_classifier/tokenizer.json");

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_file(&ethos_fuzz::scratch("fixed-tokenizer.json", TOKENIZER))
            .expect("the fixture tokenizer")
    })
}

fuzz_target!(|data: &[u8]| {
    let tok = tokenizer();
    for (n, line) in bounded_lines(data, "requests.jsonl").enumerate() {
        let Ok(line) = line else { return };
        match ScoreLine::parse(&line, "requests.jsonl", n + 1) {
            Ok(Some(l)) => {
                let _ = l.request(tok, "requests.jsonl", n + 1);
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
});
