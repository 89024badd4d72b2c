//! Request bodies as `ethos serve` reads them: the first byte picks the endpoint
//! (completions or chat), the rest is the body. Every check the server runs before the model
//! (fields, types, sizes, nesting, sampling ranges, control-vector entries), then the prompts'
//! tokenization with a real tokenizer, as the server does next.
#![no_main]
use ethos_serve::api::{check_chat, check_completion, PromptInput};
use ethos_serve::Limits;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    let limits = Limits::default();
    let tok = ethos_fuzz::fixture_tokenizer();
    let vocab = tok.vocab_size();
    if which % 2 == 0 {
        if let Ok(c) = check_completion(body, &limits, vocab) {
            for p in c.prompts {
                match p {
                    PromptInput::Text(t) => {
                        let _ = tok.encode_prompt(&t);
                    }
                    PromptInput::Ids(ids) => {
                        let _ = tok.decode(&ids);
                    }
                }
            }
        }
    } else if let Ok(c) = check_chat(body, &limits, vocab) {
        for m in c.messages {
            let _ = tok.encode(&m.content);
        }
    }
});
