//! `doc_to_text`, `doc_to_target` and `doc_to_choice` as lm-eval's `ConfigurableTask`
//! resolves them (a column name gives the column's value; anything else is a Jinja template
//! rendered with the document's columns), on minijinja set up as lm-eval's Jinja2
//! environment is: undefined names are errors, a trailing newline is kept, values print as
//! Python's `str` prints them, Python's string and list methods and the `regex_replace`
//! filter are there.

use super::config::DocTo;
use super::docs::Doc;
use crate::error::{Error, Result};
use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value as Json;

/// A resolved `doc_to_target`: an index into the choices or a text.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Index(i64),
    Text(String),
}

pub struct Templates {
    env: Environment<'static>,
    features: Vec<String>,
    /// The task file, for errors.
    name: String,
}

impl Templates {
    pub fn new(name: &str, features: Vec<String>) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_unknown_method_callback(|state, value, method, args| {
            if method == "index" && value.kind() == ValueKind::Seq {
                let wanted = args.first().cloned().unwrap_or_default();
                return value
                    .try_iter()?
                    .position(|x| x == wanted)
                    .map(Value::from)
                    .ok_or_else(|| {
                        minijinja::Error::new(
                            ErrorKind::InvalidOperation,
                            format!("{wanted} is not in list"),
                        )
                    });
            }
            minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
        });
        env.set_formatter(|out, _state, value| {
            out.write_str(&python_str(value))
                .map_err(|e| minijinja::Error::new(ErrorKind::WriteFailure, e.to_string()))
        });
        env.add_filter("string", |v: Value| python_str(&v));
        env.add_filter(
            "regex_replace",
            |s: String, pattern: String, repl: String, count: Option<usize>| {
                let re = regex::Regex::new(&pattern).map_err(|e| {
                    minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string())
                })?;
                // Python's `\1` group references in Rust's `${1}` spelling.
                let repl = regex::Regex::new(r"\\(\d+)")
                    .map(|g| g.replace_all(&repl, "$${${1}}").into_owned())
                    .unwrap_or(repl);
                Ok::<_, minijinja::Error>(
                    re.replacen(&s, count.unwrap_or(0), repl.as_str())
                        .into_owned(),
                )
            },
        );
        Self {
            env,
            features,
            name: name.to_string(),
        }
    }

    fn err(&self, key: &str, what: impl std::fmt::Display) -> Error {
        Error::Data(format!("{}: `{key}`: {what}", self.name))
    }

    /// `template` rendered with the document's columns as variables.
    pub fn render(&self, key: &str, template: &str, doc: &Doc) -> Result<String> {
        let ctx = Value::from_serialize(doc);
        self.env
            .render_str(template, ctx)
            .map_err(|e| self.err(key, render_error(&e)))
    }

    fn column<'d>(&self, spec: &str, doc: &'d Doc) -> Option<&'d Json> {
        if self.features.iter().any(|f| f == spec) {
            doc.get(spec)
        } else {
            None
        }
    }

    /// `doc_to_text`: the prompt text of a document (a column, or the rendered template).
    pub fn text(&self, key: &str, spec: &DocTo, doc: &Doc) -> Result<String> {
        match spec {
            DocTo::Text(s) => {
                if let Some(v) = self.column(s, doc) {
                    return match v {
                        Json::String(t) => Ok(t.clone()),
                        other => Err(self.err(
                            key,
                            format!("column `{s}` holds {other}, not a text (one context per choice is not supported)"),
                        )),
                    };
                }
                let t = self.render(key, s, doc)?;
                if is_digits(&t) {
                    return Err(self.err(
                        key,
                        format!(
                            "renders to the index {t} (one context per choice is not supported)"
                        ),
                    ));
                }
                Ok(t)
            }
            _ => Err(self.err(key, "wants a column name or a template")),
        }
    }

    /// `doc_to_target`: an index into the choices or the answer's text.
    pub fn target(&self, key: &str, spec: &DocTo, doc: &Doc, has_choices: bool) -> Result<Target> {
        let from_json = |v: &Json| -> Result<Target> {
            match v {
                Json::Number(n) if n.is_i64() => Ok(Target::Index(n.as_i64().unwrap_or(0))),
                Json::String(s) => Ok(Target::Text(s.clone())),
                Json::Bool(b) => Ok(Target::Text(if *b { "True" } else { "False" }.into())),
                Json::Number(n) => Ok(Target::Text(n.to_string())),
                other => Err(self.err(
                    key,
                    format!("gives {other}: one answer per item is supported (not a list of them)"),
                )),
            }
        };
        match spec {
            DocTo::Index(i) => Ok(Target::Index(*i)),
            DocTo::Text(s) => {
                if let Some(v) = self.column(s, doc) {
                    return from_json(v);
                }
                let t = self.render(key, s, doc)?;
                if is_digits(&t) && has_choices {
                    return t
                        .parse()
                        .map(Target::Index)
                        .map_err(|_| self.err(key, format!("index {t} is too large")));
                }
                if t.len() >= 2 && t.starts_with('[') && t.ends_with(']') {
                    return Err(self.err(
                        key,
                        format!("renders to the list {t}: one answer per item is supported"),
                    ));
                }
                Ok(Target::Text(t))
            }
            DocTo::List(_) => Err(self.err(key, "a list of answers per item is not supported")),
        }
    }

    /// `doc_to_choice`: the options' texts.
    pub fn choices(&self, key: &str, spec: &DocTo, doc: &Doc) -> Result<Vec<String>> {
        let texts = |items: Vec<Value>| -> Result<Vec<String>> {
            items
                .iter()
                .map(|v| match v.kind() {
                    ValueKind::String | ValueKind::Number | ValueKind::Bool => Ok(python_str(v)),
                    _ => Err(self.err(key, format!("a choice is {v}, not a text"))),
                })
                .collect()
        };
        let seq = |v: Value, what: &str| -> Result<Vec<String>> {
            if v.kind() != ValueKind::Seq {
                return Err(self.err(key, format!("{what} is {v}, not a list of choices")));
            }
            texts(v.try_iter().map_err(|e| self.err(key, e))?.collect())
        };
        match spec {
            DocTo::Text(s) => {
                if let Some(v) = self.column(s, doc) {
                    return seq(Value::from_serialize(v), &format!("column `{s}`"));
                }
                // A template that is one expression is evaluated rather than rendered and
                // parsed back (lm-eval's `ast.literal_eval` of the rendered list).
                if let Some(expr) = single_expression(s) {
                    let e = self
                        .env
                        .compile_expression(expr)
                        .map_err(|e| self.err(key, render_error(&e)))?;
                    let v = e
                        .eval(Value::from_serialize(doc))
                        .map_err(|e| self.err(key, render_error(&e)))?;
                    if v.is_undefined() {
                        return Err(self.err(key, format!("`{expr}` is undefined")));
                    }
                    return seq(v, &format!("`{expr}`"));
                }
                let t = self.render(key, s, doc)?;
                let parsed: Json = serde_json::from_str(&t)
                    .map_err(|_| self.err(key, format!("renders to `{t}`, not a list")))?;
                seq(Value::from_serialize(&parsed), "the rendered template")
            }
            DocTo::List(items) => items
                .iter()
                .map(|v| match v {
                    serde_yaml_ng::Value::String(s) => Ok(s.clone()),
                    serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
                    serde_yaml_ng::Value::Bool(b) => Ok(if *b { "True" } else { "False" }.into()),
                    _ => Err(self.err(key, "a listed choice is not a text")),
                })
                .collect(),
            DocTo::Index(_) => Err(self.err(key, "wants a column, a template or a list")),
        }
    }
}

/// Python's `str.isdigit` for the ASCII digits lm-eval's templates produce.
fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `"{{ expr }}"` → `expr`, when the template is exactly one expression.
fn single_expression(template: &str) -> Option<&str> {
    let inner = template.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%"))
        .then_some(inner.trim())
}

/// A minijinja error as one line: its kind and detail, and where in the template.
fn render_error(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line() {
        s = format!("{s} (template line {line})");
    }
    s.replace('\n', " ")
}

/// A value as Python's `str()` prints it (Jinja2 prints values so): `True`, `None`, `1.0`,
/// lists and dicts with `repr`'d items.
pub fn python_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => python_repr(v),
    }
}

fn python_repr(v: &Value) -> String {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => "None".into(),
        ValueKind::Bool => if v.is_true() { "True" } else { "False" }.into(),
        ValueKind::String => crate::pyjson::str_repr(v.as_str().unwrap_or_default()),
        ValueKind::Number => {
            if let Some(i) = v.as_i64() {
                if !v.to_string().contains('.') {
                    return i.to_string();
                }
            }
            crate::pyjson::float_repr(f64::try_from(v.clone()).unwrap_or(f64::NAN))
        }
        ValueKind::Seq => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| it.map(|x| python_repr(&x)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| {
                    it.map(|k| {
                        let val = v.get_item(&k).unwrap_or_default();
                        format!("{}: {}", python_repr(&k), python_repr(&val))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", items.join(", "))
        }
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(j: &str) -> Doc {
        serde_json::from_str(j).unwrap()
    }

    fn templates(features: &[&str]) -> Templates {
        Templates::new("t.yaml", features.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn arc_style_templates_resolve_as_lm_eval_resolves_them() {
        let t = templates(&["question", "choices", "answerKey"]);
        let d = doc(
            r#"{"question": "Why?", "choices": {"text": ["a", "b c"], "label": ["A", "B"]}, "answerKey": "B"}"#,
        );
        let text = t
            .text(
                "doc_to_text",
                &DocTo::Text("Question: {{question}}\nAnswer:".into()),
                &d,
            )
            .unwrap();
        assert_eq!(text, "Question: Why?\nAnswer:");
        let choices = t
            .choices("doc_to_choice", &DocTo::Text("{{choices.text}}".into()), &d)
            .unwrap();
        assert_eq!(choices, ["a", "b c"]);
        let target = t
            .target(
                "doc_to_target",
                &DocTo::Text("{{choices.label.index(answerKey)}}".into()),
                &d,
                true,
            )
            .unwrap();
        assert_eq!(target, Target::Index(1));
        // A column name gives the column's value.
        assert_eq!(
            t.target("doc_to_target", &DocTo::Text("answerKey".into()), &d, true)
                .unwrap(),
            Target::Text("B".into())
        );
    }

    #[test]
    fn values_print_as_python_prints_them() {
        let t = templates(&[]);
        let d = doc(r#"{"b": true, "n": null, "f": 2.0, "i": 3, "l": ["x", "it's"]}"#);
        let got = t
            .render(
                "doc_to_text",
                "{{b}} {{n}} {{f}} {{i}} {{l}} {{b|string|lower}}\n",
                &d,
            )
            .unwrap();
        assert_eq!(got, "True None 2.0 3 ['x', \"it's\"] true\n");
    }

    #[test]
    fn undefined_names_and_missing_list_items_are_errors_naming_the_key() {
        let t = templates(&["q"]);
        let d = doc(r#"{"q": "x", "l": ["a"]}"#);
        let e = t
            .text("doc_to_text", &DocTo::Text("{{ nope }}".into()), &d)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.yaml: `doc_to_text`: "), "{e}");
        let e = t
            .target(
                "doc_to_target",
                &DocTo::Text("{{ l.index('z') }}".into()),
                &d,
                true,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in list"), "{e}");
    }

    #[test]
    fn regex_replace_takes_python_group_references() {
        let t = templates(&[]);
        let d = doc(r#"{"s": "a-b c-d"}"#);
        let got = t
            .render(
                "doc_to_text",
                r"{{ s | regex_replace('(\\w)-(\\w)', '\\2+\\1') }}",
                &d,
            )
            .unwrap();
        assert_eq!(got, "b+a d+c");
    }
}
