//! A tokenizer.json, built as an HF folder's tokenizer is built, then used.
#![no_main]
use ethos_model::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    let path = ethos_fuzz::scratch("tokenizer.json", data);
    let Ok(tok) = Tokenizer::from_file(&path) else {
        return;
    };
    for text in ["Hello, 世界! 123", "", " \n\t"] {
        if let Ok(ids) = tok.encode_prompt(text) {
            let _ = tok.decode(&ids);
        }
    }
});
