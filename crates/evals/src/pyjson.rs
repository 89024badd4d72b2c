//! JSON as Python's `json.loads` gives it: objects keep their keys in the order written (a
//! repeated key keeps its first place and takes its last value), and values print as Python's
//! `str` and `repr` print them. DIWALI's matcher prints a replaced concept that is not a string
//! (`{"2": 2, "7": 7}`, `[1, 2]`, `2.5`) before normalising it, and lm-eval's Jinja prints
//! values so, so the order and the printing are part of what they compare.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    Dict(Vec<(String, PyValue)>),
}

impl PyValue {
    /// Python's truth value.
    pub fn truthy(&self) -> bool {
        match self {
            PyValue::None => false,
            PyValue::Bool(b) => *b,
            PyValue::Int(i) => *i != 0,
            PyValue::Float(f) => *f != 0.0,
            PyValue::Str(s) => !s.is_empty(),
            PyValue::List(l) => !l.is_empty(),
            PyValue::Dict(d) => !d.is_empty(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `d.get(key)` of a dict (the last value of a repeated key).
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(d) => d.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A string output parsed as JSON (`None` where `json.loads` would fail); any other value
    /// as it is.
    pub fn parsed(&self) -> Option<std::borrow::Cow<'_, PyValue>> {
        match self {
            PyValue::Str(s) => serde_json::from_str(s).ok().map(std::borrow::Cow::Owned),
            v => Some(std::borrow::Cow::Borrowed(v)),
        }
    }

    /// Python's `str()`.
    pub fn py_str(&self) -> String {
        match self {
            PyValue::Str(s) => s.clone(),
            other => other.py_repr(),
        }
    }

    fn py_repr(&self) -> String {
        match self {
            PyValue::None => "None".into(),
            PyValue::Bool(b) => if *b { "True" } else { "False" }.into(),
            PyValue::Int(i) => i.to_string(),
            PyValue::Float(f) => float_repr(*f),
            PyValue::Str(s) => str_repr(s),
            PyValue::List(l) => format!(
                "[{}]",
                l.iter()
                    .map(PyValue::py_repr)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            PyValue::Dict(d) => format!(
                "{{{}}}",
                d.iter()
                    .map(|(k, v)| format!("{}: {}", str_repr(k), v.py_repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Python's `repr` of a float: the shortest digits that round-trip, positional for decimal
/// exponents from -4 to 15, else `d.ddde+XX`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // `{:e}` gives the shortest round-trip digits and the exponent: "1.5e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Python's `repr` of a string: single quotes unless it has a single quote and no double one;
/// backslash, quote and control characters escaped.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

struct PyVisitor;

impl<'de> Visitor<'de> for PyVisitor {
    type Value = PyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<PyValue, E> {
        Ok(PyValue::None)
    }
    fn visit_bool<E>(self, b: bool) -> Result<PyValue, E> {
        Ok(PyValue::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<PyValue, E> {
        Ok(PyValue::Int(i.into()))
    }
    fn visit_u64<E>(self, u: u64) -> Result<PyValue, E> {
        Ok(PyValue::Int(u.into()))
    }
    fn visit_f64<E>(self, f: f64) -> Result<PyValue, E> {
        Ok(PyValue::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<PyValue, E> {
        Ok(PyValue::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<PyValue, E> {
        Ok(PyValue::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyValue, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(PyValue::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyValue, A::Error> {
        let mut out: Vec<(String, PyValue)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, PyValue>()? {
            match out.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        Ok(PyValue::Dict(out))
    }
}

impl<'de> Deserialize<'de> for PyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from CPython 3.11's `str(json.loads(text))`.
    #[test]
    fn values_print_as_python_prints_them() {
        for (json, printed) in [
            (
                r#"{"2": 2, "7": 7, "12": 12}"#,
                "{'2': 2, '7': 7, '12': 12}",
            ),
            (r#"{"a": 1, "b": 2, "a": 3}"#, "{'a': 3, 'b': 2}"),
            (
                r#"[1.5, 2.0, 1e16, 1.5e-05, 0.0001, true, null, "it's"]"#,
                "[1.5, 2.0, 1e+16, 1.5e-05, 0.0001, True, None, \"it's\"]",
            ),
            (r#"["a\nb", "q'\""]"#, r#"['a\nb', 'q\'"']"#),
            ("12345678901234567", "12345678901234567"),
            ("2.50", "2.5"),
        ] {
            let v: PyValue = serde_json::from_str(json).unwrap();
            assert_eq!(v.py_str(), printed, "{json}");
        }
    }
}
