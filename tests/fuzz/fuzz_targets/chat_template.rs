//! A chat template and the messages it renders, both from the input: the template, then
//! messages as `role\x1fcontent` records separated by `\x1e`, after a `\0`. Renders under
//! lowered budgets (a stopped rendering keeps its memory until the process ends).
#![no_main]
use ethos_model::chat::{ChatTemplate, Message};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: ethos_fuzz::BudgetAllocator = ethos_fuzz::BudgetAllocator;

fuzz_target!(|data: &[u8]| {
    ethos_model::chat::set_template_budget(32 << 20, std::time::Duration::from_millis(300));
    let text = String::from_utf8_lossy(data);
    let (source, rest) = text.split_once('\0').unwrap_or((&text, "user\x1fHello"));
    let messages: Vec<Message> = rest
        .split('\x1e')
        .map(|m| {
            let (role, content) = m.split_once('\x1f').unwrap_or(("user", m));
            Message::new(role, content)
        })
        .collect();
    let t = ChatTemplate::new(source.to_string(), "<s>".into(), "</s>".into());
    let _ = t.render(&messages, true);
});
