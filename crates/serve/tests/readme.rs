//! The README's Serve examples give what the README shows: each `curl` command of the
//! section is sent (its URL and `-d` body) to a server started as the README starts it, and
//! every field the README shows must be in the answer (numbers to 1e-3; fields it leaves out,
//! such as `id` and `created`, are not compared).

mod common;

use common::{repo, smollm2, Running};
use serde_json::Value;

/// (path, body, shown answer) of each curl example in the README's Serve section.
fn examples() -> Vec<(String, String, Value)> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("\n## Serve\n").expect("a Serve section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let blocks: Vec<(&str, &str)> = section
        .split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|b| b.split_once('\n'))
        .collect();
    let mut out = Vec::new();
    for pair in blocks.windows(2) {
        let [(lang, cmd), (next, shown)] = pair else {
            continue;
        };
        if *lang != "sh" || !cmd.trim_start().starts_with("curl") || *next != "json" {
            continue;
        }
        let cmd = cmd.replace("\\\n", " ");
        let url = cmd
            .split_whitespace()
            .find(|w| w.starts_with("localhost:8080"))
            .expect("a localhost:8080 URL");
        let body = cmd
            .split("-d '")
            .nth(1)
            .and_then(|b| b.split('\'').next())
            .expect("a -d body");
        let shown: Value =
            serde_json::from_str(shown).unwrap_or_else(|e| panic!("README json: {e}\n{shown}"));
        out.push((
            url.trim_start_matches("localhost:8080").to_string(),
            body.to_string(),
            shown,
        ));
    }
    out
}

/// Every field of `shown` is in `got`, equal (numbers to 1e-3).
fn contains(got: &Value, shown: &Value, at: &str) {
    match (got, shown) {
        (Value::Object(g), Value::Object(s)) => {
            for (k, v) in s {
                let g = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k}: missing in {got}"));
                contains(g, v, &format!("{at}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(s)) => {
            assert_eq!(g.len(), s.len(), "{at}: lengths differ: {got} vs {shown}");
            for (i, (g, s)) in g.iter().zip(s).enumerate() {
                contains(g, s, &format!("{at}[{i}]"));
            }
        }
        (Value::Number(g), Value::Number(s)) => {
            let (g, s) = (g.as_f64().unwrap(), s.as_f64().unwrap());
            assert!((g - s).abs() <= 1e-3, "{at}: {g} vs {s} shown");
        }
        _ => assert_eq!(got, shown, "{at}"),
    }
}

#[test]
fn the_readme_curl_examples_produce_what_it_shows() {
    let examples = examples();
    assert_eq!(
        examples.len(),
        4,
        "the README's Serve section has four curl examples"
    );
    let Some(model) = smollm2(None) else { return };
    let server = Running::start(model, |c| {
        c.control_vector_dir = Some(repo().join("tests/fixtures/control"));
    });
    for (path, body, shown) in examples {
        let (_, got) = server.post_raw(&path, &body, None);
        contains(&got, &shown, &path);
    }
}
