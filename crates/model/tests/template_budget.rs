//! Chat templates that amplify memory stop at their budget with one line, under the allocator
//! the `ethos` binary installs. Each case allocated gigabytes and aborted before the budget.

use ethos_model::budget::{budget_enforced, run_with_budget, BudgetAllocator, Overrun};
use ethos_model::chat::{ChatTemplate, Message, TEMPLATE_MEMORY};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: BudgetAllocator = BudgetAllocator;

fn render(source: &str) -> Result<String, String> {
    ChatTemplate::new(source.into(), "<s>".into(), "</s>".into())
        .render(&[Message::new("user", "hello")], true)
        .map_err(|e| e.to_string())
}

#[test]
fn the_budget_counts_under_this_allocator() {
    assert!(budget_enforced());
}

#[test]
fn work_within_budget_returns_its_value_and_work_past_it_stops() {
    assert_eq!(
        run_with_budget(1 << 20, Duration::from_secs(5), || vec![1u8; 1000].len()),
        Ok(1000)
    );
    // Many small allocations held at once count as much as one big one.
    let held = run_with_budget(8 << 20, Duration::from_secs(5), || {
        (0..10_000)
            .map(|_| vec![0u8; 4096])
            .collect::<Vec<_>>()
            .len()
    });
    assert_eq!(held, Err(Overrun::Memory));
    // Freed memory is given back: a loop that allocates and drops stays under budget.
    let churn = run_with_budget(1 << 20, Duration::from_secs(5), || {
        (0..10_000)
            .map(|i| usize::from(vec![1u8; 4096][i % 4096]))
            .sum::<usize>()
    });
    assert_eq!(churn, Ok(10_000));
    let slow = run_with_budget(1 << 20, Duration::from_millis(50), || loop {
        std::hint::black_box(vec![0u8; 16]);
    });
    assert_eq!(slow, Err(Overrun::Time));
}

/// A panic in budgeted work (a bug in a library it runs) is the caller's error, not its panic.
#[test]
fn a_panic_in_budgeted_work_is_an_error_for_the_caller() {
    let out = run_with_budget(1 << 20, Duration::from_secs(5), || -> usize {
        panic!("inner")
    });
    assert_eq!(out, Err(Overrun::Panic));
}

/// Found by the chat_template fuzz target: minijinja's `format` slices a format string inside
/// a multi-byte character and panics; the rendering fails with one line instead.
#[test]
fn a_template_engine_panic_is_one_line() {
    let e = render("{{ '%(é)s'|format(1) }}").unwrap_err();
    assert!(
        e.contains("template engine failed") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn amplifying_templates_stop_at_the_memory_budget() {
    let mib = TEMPLATE_MEMORY >> 20;
    let cases = [
        // indent and format widths
        "{{ 'x'|indent(100000000000) }}",
        "{{ messages[0]['content']|indent(400000000) }}",
        // doubling a string in a namespace, then through a macro's recursion
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ d('x', 60) }}",
        // unrolled doubling from a 100 MB string, no loop at all
        "{% set a = 'x' * 100000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c|length }}",
        // a 90 MB string to a list of characters, and replace of the empty string
        "{{ ('x' * 90000000)|list|join }}",
        "{{ ('x' * 90000000)|replace('', 'yy')|length }}",
        "{{ ('x' * 90000000).replace('', 'yy')|length }}",
    ];
    for source in cases {
        let start = Instant::now();
        let e = render(source).unwrap_err();
        assert!(
            e.contains(&format!("more than {mib} MiB")) && !e.contains('\n'),
            "{source}: {e}"
        );
        assert!(start.elapsed() < Duration::from_secs(5), "{source}");
    }
}

#[test]
fn a_real_template_renders_the_same_under_the_budget() {
    let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let turns: Vec<Message> = (0..500)
        .map(|i| {
            Message::new(
                if i % 2 == 0 { "user" } else { "assistant" },
                "word ".repeat(200).as_str(),
            )
        })
        .collect();
    let out = ChatTemplate::new(chatml.into(), String::new(), String::new())
        .render(&turns, true)
        .unwrap();
    assert_eq!(out.matches("<|im_start|>").count(), 501);
    assert!(out.len() > 500 * 1000);
}

/// Found by the chat_template fuzz target: `{% set ns.s = ns, x %}` makes a namespace hold
/// itself, and printing it recursed until the stack overflowed (an abort no caller can catch).
/// Each level of that recursion allocates, and the budgeted thread is stopped when its stack
/// is nearly used: one line instead. The input is kept as found.
#[test]
fn a_namespace_that_holds_itself_stops_at_the_stack_budget() {
    let found = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/fuzz/chat_template_namespace_holds_itself.jinja"
    ))
    .unwrap();
    let text = String::from_utf8_lossy(&found);
    let source = text.split('\0').next().unwrap();
    for source in [
        source,
        "{% set ns = namespace(s='') %}{% set ns.s = ns, 1 %}{{ ns }}",
        "{% set ns = namespace(s='') %}{% set ns.s = [ns] %}{{ ns.s ~ 'x' }}",
        "{% set ns = namespace(s='') %}{% set ns.s = ns %}{{ ns|tojson }}",
    ] {
        let e = render(source).unwrap_err();
        assert!(
            e.contains("recursed past its stack") && !e.contains('\n'),
            "{source}: {e}"
        );
    }
}

#[test]
fn recursion_that_allocates_stops_at_the_stack_budget() {
    #[allow(unconditional_recursion)]
    fn dive(n: u64) -> u64 {
        let v = std::hint::black_box(vec![n; 4]);
        1 + dive(v[0] + 1)
    }
    let deep = run_with_budget(1 << 30, Duration::from_secs(5), || dive(0));
    assert_eq!(deep, Err(Overrun::Stack));
}
