//! The tokenizer a GGUF file describes (SentencePiece or byte-level BPE), through our header
//! pass and candle's reader.
#![no_main]
use ethos_model::tokenizer::Tokenizer;
use ethos_model::GgufFile;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    let path = ethos_fuzz::scratch("tokenizer.gguf", data);
    let Ok(file) = GgufFile::open(&path) else {
        return;
    };
    let Ok(tok) = Tokenizer::from_gguf(&file) else {
        return;
    };
    for text in ["Hello, 世界! 123", "", " \n\t", "<|im_start|>user"] {
        if let Ok(ids) = tok.encode_prompt(text) {
            let _ = tok.decode(&ids);
            let _ = tok.pieces(&ids);
        }
    }
});
