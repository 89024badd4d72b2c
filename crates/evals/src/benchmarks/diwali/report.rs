//! The DIWALI run's page: the authors' totals, the names matched most often at each step, and
//! the entries with their replaced words and matches.

use super::matching::Matched;
use super::DiwaliResults;
use crate::report::{bars, esc, model_source, page};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Entries listed in full on the page (all of them are in `scores.json`).
const LISTED: usize = 200;

pub fn html(r: &DiwaliResults, m: &Matched) -> String {
    let mut body = String::new();
    let source = match (&r.model, &r.adaptations) {
        (Some(model), _) => format!("adapted by {}", model_source(model)),
        (None, Some(a)) => format!(
            "outputs from {}",
            a.get("source").and_then(|v| v.as_str()).unwrap_or("?")
        ),
        (None, None) => String::new(),
    };
    let s = &r.dataset_statistics;
    let _ = write!(
        body,
        "<h1>diwali: {}</h1><p>{} outputs ({} did not parse), {} sentences, {} with replacements; concepts: {} names from {} (sha256 <code>{}</code>); ethos {}; {:.1} s.</p>",
        esc(&source),
        r.outputs,
        r.unparsed_outputs,
        s.total_sentences,
        s.entries_with_replacements,
        r.concepts.names,
        esc(&r.concepts.source),
        esc(&r.concepts.sha256),
        r.ethos_version,
        r.wall_seconds
    );
    let _ = write!(
        body,
        "<table><tr><th>step</th><th>matches</th><th>per sentence</th></tr><tr><td>strict</td><td>{}</td><td>{:.4}</td></tr><tr><td>singular/plural</td><td>{}</td><td>{:.4}</td></tr><tr><td>fuzzy (&gt;= 80)</td><td>{}</td><td>{:.4}</td></tr></table>",
        s.total_strict_matches,
        s.average_strict_match_per_sentence,
        s.total_singular_plural_matches,
        s.average_singular_plural_match_per_sentence,
        s.total_fuzzy_matches,
        s.average_fuzzy_match_per_sentence
    );
    if let Some(j) = &r.judge {
        if let (Some(cr), Some(lf), Some(mi), Some(avg)) = (
            j.cultural_relevance,
            j.language_fluency,
            j.mathematical_integrity,
            j.average,
        ) {
            let rows: Vec<(String, f64, String)> = [
                ("Cultural Relevance", cr, j.from_reply[0]),
                ("Language Fluency", lf, j.from_reply[1]),
                ("Mathematical Integrity", mi, j.from_reply[2]),
            ]
            .iter()
            .map(|(name, v, from)| {
                (
                    name.to_string(),
                    v / 5.0,
                    format!("{v:.2} ({from} of {} from the reply)", j.judged),
                )
            })
            .collect();
            let _ = write!(
                body,
                "<h2>Judge: mean of {} items, 0-5 (average {avg:.2})</h2>{}<p>A criterion the reply leaves out keeps the prompt example's 5, as the authors' parser reads it.</p>",
                j.judged,
                bars(&rows, None)
            );
        }
    }
    // How often each name was matched at each step.
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (_, e) in &m.entries {
        for (step, names) in [
            ("strict", &e.strict_matches),
            ("singular/plural", &e.singular_plural_matches),
            ("fuzzy", &e.fuzzy_matches),
        ] {
            for n in names {
                *counts.entry((step, n.as_str())).or_default() += 1;
            }
        }
    }
    let mut top: Vec<((&str, &str), usize)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(&(_, most)) = top.first() {
        let rows: Vec<(String, f64, String)> = top
            .iter()
            .take(30)
            .map(|((step, name), n)| {
                (
                    format!("{name} ({step})"),
                    *n as f64 / most as f64,
                    n.to_string(),
                )
            })
            .collect();
        let _ = write!(
            body,
            "<h2>Names matched most often</h2>{}",
            bars(&rows, None)
        );
    }
    let _ = write!(
        body,
        "<h2>Entries with replacements (first {} of {}; all in scores.json)</h2><table><tr><th>output</th><th style=\"text-align:left\">adapted text</th><th>replaced words</th><th>strict</th><th>singular/plural</th><th>fuzzy</th></tr>",
        LISTED.min(m.entries.len()),
        m.entries.len()
    );
    for (i, e) in m.entries.iter().take(LISTED) {
        let _ = write!(
            body,
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            esc(&e.adapted_text),
            esc(&e.replaced_words.join(", ")),
            esc(&e.strict_matches.join(", ")),
            esc(&e.singular_plural_matches.join(", ")),
            esc(&e.fuzzy_matches.join(", "))
        );
    }
    body.push_str("</table>");
    page("diwali", &body)
}
