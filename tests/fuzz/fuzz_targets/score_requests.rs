//! JSONL score requests as `ethos score` reads them: bounded lines, the request's checks, and
//! tokenizing its context and continuations with a real tokenizer.
#![no_main]
use ethos_steer::requests::{bounded_lines, ScoreLine};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    let tok = ethos_fuzz::fixture_tokenizer();
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
