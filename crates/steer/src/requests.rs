//! Requests as they arrive in text: a bounded line reader and the JSONL score request
//! (`{"context", "continuations", "id"}`) with its checks, shared by `ethos score`, the
//! chat loop and the fuzz targets.

use crate::error::{Error, Result};
use ethos_model::scoring::{continuation_split, ScoreRequest};
use ethos_model::tokenizer::TextEncoder;
use serde::Deserialize;

/// The longest line a line-by-line reader takes (a JSONL request, a chat message): a file
/// or stream with no newline (`/dev/zero`) stops here with an error instead of filling memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// The most continuations one request may carry: it is scored in one piece, so its memory
/// and time grow with the count.
pub const MAX_CONTINUATIONS: usize = 1024;

/// The lines of `reader` (without their `\n` or `\r\n`), each at most `MAX_LINE_BYTES`;
/// `source` names the input in errors (`SOURCE:LINE: ...`).
pub fn bounded_lines<'a, R: std::io::BufRead + 'a>(
    mut reader: R,
    source: &'a str,
) -> impl Iterator<Item = Result<String>> + 'a {
    let mut n = 0usize;
    std::iter::from_fn(move || {
        use std::io::{BufRead, Read};
        n += 1;
        let mut buf = Vec::new();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf);
        match read {
            Err(e) => Some(Err(Error::Input(format!("{source}:{n}: cannot read: {e}")))),
            Ok(0) => None,
            Ok(_) if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') => {
                Some(Err(Error::Input(format!(
                    "{source}:{n}: line longer than {MAX_LINE_BYTES} bytes (the limit)"
                ))))
            }
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                Some(
                    String::from_utf8(buf)
                        .map_err(|_| Error::Input(format!("{source}:{n}: not valid UTF-8"))),
                )
            }
        }
    })
}

/// One JSONL score request as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreLine {
    pub context: String,
    pub continuations: Vec<String>,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
}

impl ScoreLine {
    /// Parses line `n` (1-based) of `source`; `None` for a blank line.
    pub fn parse(line: &str, source: &str, n: usize) -> Result<Option<Self>> {
        if line.trim().is_empty() {
            return Ok(None);
        }
        let l: ScoreLine =
            serde_json::from_str(line).map_err(|e| Error::Input(format!("{source}:{n}: {e}")))?;
        if l.continuations.is_empty() {
            return Err(Error::Input(format!(
                "{source}:{n}: `continuations` is empty"
            )));
        }
        if l.continuations.len() > MAX_CONTINUATIONS {
            return Err(Error::Input(format!(
                "{source}:{n}: {} continuations, more than the limit of {MAX_CONTINUATIONS} per line; split them over several lines with the same context",
                l.continuations.len()
            )));
        }
        Ok(Some(l))
    }

    /// The token ids to score: the context as a prompt, each continuation as
    /// lm-evaluation-harness splits it.
    /// `tok` is the model's tokenizer, or a server's.
    pub fn request(&self, tok: &dyn TextEncoder, source: &str, n: usize) -> Result<ScoreRequest> {
        let context = tok.encode_text(&self.context, true)?;
        if context.is_empty() {
            return Err(Error::Input(format!(
                "{source}:{n}: the context is empty and the model adds no BOS token; give a non-empty context"
            )));
        }
        let continuations = self
            .continuations
            .iter()
            .map(|c| {
                continuation_split(
                    |t, special| tok.encode_text(t, special),
                    &context,
                    &self.context,
                    c,
                    true,
                )
            })
            .collect::<ethos_model::Result<Vec<_>>>()?;
        Ok(ScoreRequest {
            context,
            continuations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines_strip_endings_and_refuse_endless_lines() {
        let got: Vec<String> = bounded_lines(&b"a\r\nb\n\nlast"[..], "in")
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(got, ["a", "b", "", "last"]);
        let endless = std::io::repeat(b'x');
        let e = bounded_lines(std::io::BufReader::new(endless), "/dev/zero")
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero:1: line longer than"), "{e}");
        let e = bounded_lines(&b"ok\n\xff\xfe\n"[..], "in")
            .nth(1)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("in:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn score_lines_are_checked() {
        assert!(ScoreLine::parse("  ", "in", 1).unwrap().is_none());
        let e = ScoreLine::parse(r#"{"context": "a", "continuations": []}"#, "in", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in:3: `continuations` is empty"), "{e}");
        let e = ScoreLine::parse(r#"{"context": "a", "continuation": ["b"]}"#, "in", 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("in:4: unknown field `continuation`"), "{e}");
        let l = ScoreLine::parse(
            r#"{"context": "a", "continuations": ["b"], "id": 7}"#,
            "in",
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (l.continuations.len(), l.id),
            (1, Some(serde_json::json!(7)))
        );
    }
}
